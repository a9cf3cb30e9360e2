package loadtool

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
)

// WriteTable prints the report for people: one row per phase.
func (r *Report) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tauth\tconc\tdone\tper s\tp50 ms\tp95 ms\tp99 ms\terrors\tCPU ms/op\tstore RTs/op\tbg RTs/op\tredis cmds/op\tredis CPU ms/op\tredis B/op\t")
	for _, p := range r.Phases {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			p.Phase, p.Auth, p.Concurrency, p.Done, p.PerSecond, p.P50ms, p.P95ms, p.P99ms, total(p.Errors),
			opt(p.ServerCPUms, 2), opt(p.StoreOps, 1), opt(p.BgOps, 1), opt(p.RedisCmds, 1), opt(p.RedisCPUms, 3), opt(p.RedisBytes, 0))
	}
	tw.Flush()
	for _, p := range r.Phases {
		if len(p.Errors) == 0 {
			continue
		}
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(p.Errors)) {
			parts = append(parts, fmt.Sprintf("%s=%d", k, p.Errors[k]))
		}
		fmt.Fprintf(w, "%s errors: %s\n", p.Phase, strings.Join(parts, " "))
	}
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func opt(v *float64, prec int) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.*f", prec, *v)
}
