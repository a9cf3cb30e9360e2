package config

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigSecretFiles(t *testing.T) {
	dir := t.TempDir()
	hexOut := openssl(t, dir, "rand", "-hex", "32")
	b64Out := openssl(t, dir, "rand", "-base64", "48")
	tests := []struct {
		name    string
		content []byte
		wantLen int
		err     string
	}{
		{"openssl hex with newline", hexOut, 32, ""},
		{"openssl base64 with newline", b64Out, 48, ""},
		{"base64url raw", []byte(strings.Repeat("_-", 22)), 33, ""},
		{"crlf", append(bytes.TrimSpace(hexOut), '\r', '\n'), 32, ""},
		{"empty", []byte("\n"), 0, "empty"},
		{"not encoded", []byte("correct horse battery staple, 32+ chars"), 0, "neither hex nor base64"},
		{"too short", []byte(strings.Repeat("ab", 16)), 0, "at least 32 bytes, got 16"},
		{"too big", bytes.Repeat([]byte("a"), maxSecretFileBytes+1), 0, "not a secret file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeFile(t, dir, "k", tt.content)
			key, err := secretSpec{path: "secrets.cookie_key", file: p, min: 32}.load()
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				if strings.Contains(err.Error(), strings.TrimSpace(string(tt.content))) && len(tt.content) > 4 {
					t.Fatal("error echoes the secret")
				}
				return
			}
			if err != nil || len(key) != tt.wantLen {
				t.Fatalf("key %d bytes, err %v", len(key), err)
			}
		})
	}
	// The hex form decodes to exactly what openssl printed.
	key, err := decodeKey(string(hexOut))
	if err != nil || hex.EncodeToString(key) != strings.TrimSpace(string(hexOut)) {
		t.Fatalf("hex key %x %v", key, err)
	}
}

// TestSecretSpecRefusals: the ways a key can be wrong, none of which may
// show the key in the error.
func TestSecretSpecRefusals(t *testing.T) {
	dir := t.TempDir()
	good := strings.Repeat("ab", 32)
	file := writeFile(t, dir, "good.key", []byte(good+"\n"))
	blank := writeFile(t, dir, "blank.key", []byte(" \t\r\n"))
	os.Mkdir(filepath.Join(dir, "keys.d"), 0o700)
	tests := []struct {
		name string
		spec secretSpec
		err  string
	}{
		{"inline and file", secretSpec{inline: good, file: file, min: 32}, "set the key or its _file, not both"},
		{"file missing", secretSpec{file: filepath.Join(dir, "nope.key"), min: 32}, "no such file"},
		{"file is a directory", secretSpec{file: filepath.Join(dir, "keys.d"), min: 32}, "is a directory"},
		{"file only whitespace", secretSpec{file: blank, min: 32}, "blank.key: empty"},
		{"inline only whitespace", secretSpec{inline: " \n", min: 32}, "must be at least 32 bytes, got 0"},
		{"inline with inner space", secretSpec{inline: good[:32] + " " + good[32:], min: 32}, "is neither hex nor base64"},
		{"base64 alphabets mixed", secretSpec{inline: strings.Repeat("A+B_", 11), min: 32}, "is neither hex nor base64"},
		{"odd hex that is not base64", secretSpec{inline: good + "a", min: 32}, "is neither hex nor base64"},
		{"one byte short", secretSpec{inline: strings.Repeat("ab", 31), min: 32}, "must be at least 32 bytes, got 31"},
		{"exact size, one byte long", secretSpec{inline: strings.Repeat("ab", 33), min: 32, max: 32}, "must be exactly 32 bytes, got 33"},
		{"exact size, short", secretSpec{inline: strings.Repeat("ab", 16), min: 32, max: 32}, "must be exactly 32 bytes, got 16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, err := tt.spec.load()
			if err == nil || key != nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("key %x err %v, want %q", key, err, tt.err)
			}
			if strings.Contains(err.Error(), good[:16]) {
				t.Fatalf("err %q shows key material", err)
			}
		})
	}
	// Not configured is not an error: Validate and Options decide.
	if key, err := (secretSpec{min: 32}).load(); key != nil || err != nil {
		t.Fatalf("unset key: %x %v", key, err)
	}
}
