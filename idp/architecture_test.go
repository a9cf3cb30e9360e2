package idp_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// module is the import path of the repository's module.
const module = "github.com/watashi-id/watashi"

// maxMethods bounds the methods of one type: a type that does more is two
// types, and the place where a change lands should be obvious.
const maxMethods = 40

// pkgInfo is what the architecture rules read of one package: its
// non-test files only, as the compiler builds them.
type pkgInfo struct {
	imports map[string]bool
	methods map[string]int // receiver type -> methods
	mounts  bool           // declares a Mount method: a handler package
	docGo   bool
}

// loadModule parses every package of the module below the repository
// root, skipping testdata, node_modules and the nested deploy/test module.
func loadModule(t *testing.T) map[string]*pkgInfo {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found: %v", err)
	}
	pkgs := map[string]*pkgInfo{}
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case "testdata", "node_modules", ".git", "out":
				return filepath.SkipDir
			}
			if p != root {
				if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
					return filepath.SkipDir // another module
				}
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(p))
		ip := module
		if rel != "." {
			ip = path.Join(module, filepath.ToSlash(rel))
		}
		f, err := parser.ParseFile(fset, p, nil, parser.ImportsOnly|parser.ParseComments)
		if err != nil {
			return err
		}
		info := pkgs[ip]
		if info == nil {
			info = &pkgInfo{imports: map[string]bool{}, methods: map[string]int{}}
			pkgs[ip] = info
		}
		if filepath.Base(p) == "doc.go" && f.Doc != nil {
			info.docGo = true
		}
		for _, im := range f.Imports {
			v, _ := strconv.Unquote(im.Path.Value)
			info.imports[v] = true
		}
		full, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return err
		}
		for _, decl := range full.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv == nil || len(fn.Recv.List) == 0 {
				continue
			}
			recv := fn.Recv.List[0].Type
			if s, ok := recv.(*ast.StarExpr); ok {
				recv = s.X
			}
			if g, ok := recv.(*ast.IndexExpr); ok {
				recv = g.X
			}
			if g, ok := recv.(*ast.IndexListExpr); ok {
				recv = g.X
			}
			if id, ok := recv.(*ast.Ident); ok {
				info.methods[id.Name]++
			}
			if fn.Name.Name == "Mount" {
				info.mounts = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

// The package rules of docs/architecture.md, held by a test so that they
// stay true as the provider grows.
func TestArchitecture(t *testing.T) {
	pkgs := loadModule(t)
	if len(pkgs) < 20 {
		t.Fatalf("found only %d packages: the walk is broken", len(pkgs))
	}
	names := make([]string, 0, len(pkgs))
	for ip := range pkgs {
		names = append(names, ip)
	}
	sort.Strings(names)
	idp := module + "/idp"
	under := func(ip, base string) bool { return ip == base || strings.HasPrefix(ip, base+"/") }
	var handlers []string
	for _, ip := range names {
		if pkgs[ip].mounts && under(ip, idp) {
			handlers = append(handlers, ip)
		}
	}
	if len(handlers) < 4 {
		t.Fatalf("found only %d handler packages (%v): the Mount detection is broken", len(handlers), handlers)
	}

	t.Run("data flows one way", func(t *testing.T) {
		for _, ip := range names {
			if under(ip, idp) || under(ip, module+"/cmd") {
				continue
			}
			for im := range pkgs[ip].imports {
				if under(im, idp) {
					t.Errorf("%s imports %s: nothing below idp may import it", ip, im)
				}
			}
		}
		// Within idp, only the wiring and the commands see the root.
		for _, ip := range names {
			if ip == idp || !under(ip, idp) {
				continue
			}
			if pkgs[ip].imports[idp] && ip != idp+"/config" {
				t.Errorf("%s imports the idp root, which only wires", ip)
			}
		}
	})
	t.Run("handler packages do not import one another", func(t *testing.T) {
		for _, a := range handlers {
			for _, b := range handlers {
				if a != b && pkgs[a].imports[b] {
					t.Errorf("handler package %s imports handler package %s", a, b)
				}
			}
		}
	})
	t.Run("a doc.go per package", func(t *testing.T) {
		for _, ip := range names {
			if !pkgs[ip].docGo {
				t.Errorf("%s has no doc.go with a package comment", ip)
			}
		}
	})
	t.Run("no type has more than 40 methods", func(t *testing.T) {
		for _, ip := range names {
			for typ, n := range pkgs[ip].methods {
				if n > maxMethods {
					t.Errorf("%s.%s has %d methods (at most %d)", ip, typ, n, maxMethods)
				}
			}
		}
	})
}
