package main

import (
	"encoding/xml"
	"io"
	"strings"
	"testing"
)

// A table as scripts/bench.sh prints it.
const sample = `| measure | direct | relay | direct-handoff |
|---|---|---|---|
| TCP 1 stream in (Gbit/s) | 40.10 | 25.30 (0.63×) | 39.90 (1.00×) |
| HTTP keep-alive p99 (ms) | 1.20 | 2.40 (2.00×) | — |
| forwarder CPU (% of a core) | — | 95.00 | 3.00 |
| start to first answer (ms) | 3.00 | 30.00 (10.00×) | 33.00 (11.00×) |

- kernel 6.12.0, 2 cores
- ratios are to direct; for p99 and start-up a ratio above 1 is worse
`

func TestParse(t *testing.T) {
	tb, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(tb.modes, ","); got != "relay,direct-handoff" {
		t.Errorf("modes = %s", got)
	}
	for _, tc := range []struct {
		name    string
		row     int
		measure string
		lower   bool
		ratios  map[string]float64
	}{
		{"throughput, both paths", 0, "TCP 1 stream in (Gbit/s)", false, map[string]float64{"relay": 0.63, "direct-handoff": 1}},
		{"p99, a path without a figure", 1, "HTTP keep-alive p99 (ms)", true, map[string]float64{"relay": 2}},
		{"start-up; CPU without ratios left out", 2, "start to first answer (ms)", true, map[string]float64{"relay": 10, "direct-handoff": 11}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if len(tb.rows) != 3 {
				t.Fatalf("%d rows, want 3", len(tb.rows))
			}
			r := tb.rows[tc.row]
			if r.measure != tc.measure || r.lower != tc.lower || len(r.ratio) != len(tc.ratios) {
				t.Fatalf("row = %+v", r)
			}
			for m, v := range tc.ratios {
				if r.ratio[m] != v {
					t.Errorf("%s: %v, want %v", m, r.ratio[m], v)
				}
			}
		})
	}
	if len(tb.notes) != 2 {
		t.Errorf("notes = %q", tb.notes)
	}
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"empty", ""},
		{"another table", "| a | b |\n|---|---|\n| 1 | 2 |\n"},
		{"no ratios", "| measure | direct | relay |\n|---|---|---|\n| x | 1 | 2 |\n"},
		{"short row", "| measure | direct | relay |\n|---|---|---|\n| x | 1 |\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parse(strings.NewReader(tc.in)); err == nil {
				t.Fatal("parsed")
			}
		})
	}
}

// The chart is well-formed XML with one bar per ratio.
func TestRender(t *testing.T) {
	tb, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	svg := render(tb)
	d := xml.NewDecoder(strings.NewReader(svg))
	bars := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not XML: %v\n%s", err, svg)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "rect" {
			for _, a := range se.Attr {
				if a.Name.Local == "height" && a.Value == "10" {
					bars++
				}
			}
		}
	}
	if bars != 5 {
		t.Errorf("%d bars, want 5", bars)
	}
}
