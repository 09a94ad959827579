// Command benchchart draws the table scripts/bench.sh prints as an SVG chart:
// for each measure, one bar per path (relay, direct-handoff, peers…) with its
// ratio to direct loopback, and a line at 1×. Measures where higher is better
// (throughput, requests, round trips), the p99 latencies and the start-up
// time get a panel each, with its own scale, so that a long start-up ratio
// does not squash the other bars. Rows without ratios (CPU, memory) are left out.
//
//	scripts/bench.sh | tee /tmp/bench.md
//	go run ./scripts/benchchart -o docs/bench.svg /tmp/bench.md   (or the table on stdin)
//
// Only the standard library: the chart is plain SVG text.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
)

// table is the part of bench.sh's Markdown table that has ratios.
type table struct {
	modes []string // the paths compared with direct, in the table's order
	rows  []row
	notes []string // the "- " lines under the table
}

type row struct {
	measure string
	lower   bool               // lower is better (p99, start-up)
	ratio   map[string]float64 // mode → ratio to direct; absent when the cell has none
}

func main() {
	out := flag.String("o", "docs/bench.svg", "the SVG file to write")
	flag.Parse()
	in := io.Reader(os.Stdin)
	if flag.NArg() > 1 {
		fmt.Fprintln(os.Stderr, "benchchart: at most one input file")
		os.Exit(2)
	}
	if flag.NArg() == 1 {
		f, err := os.Open(flag.Arg(0))
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchchart:", err)
			os.Exit(1)
		}
		defer f.Close()
		in = f
	}
	t, err := parse(in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchchart:", err)
		os.Exit(1)
	}
	if err := os.WriteFile(*out, []byte(render(t)), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "benchchart:", err)
		os.Exit(1)
	}
}

// parse reads bench.sh's table: a header "| measure | direct | relay | … |",
// a separator, rows whose cells are "—", "V" or "V (R×)", then "- " notes.
func parse(r io.Reader) (table, error) {
	var t table
	var header []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "- "):
			t.notes = append(t.notes, strings.TrimPrefix(line, "- "))
			continue
		case !strings.HasPrefix(line, "|"):
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		switch {
		case header == nil:
			if len(cells) < 2 || cells[0] != "measure" {
				return table{}, fmt.Errorf("not bench.sh's table: header %q", line)
			}
			header = cells[1:]
			for _, m := range header {
				if m != "direct" {
					t.modes = append(t.modes, m)
				}
			}
		case strings.HasPrefix(cells[0], "---"):
		default:
			if len(cells) != len(header)+1 {
				return table{}, fmt.Errorf("row %q has %d cells, the header %d", line, len(cells), len(header)+1)
			}
			rw := row{measure: cells[0], ratio: map[string]float64{}}
			// bench.sh: "for p99 and start-up a ratio above 1 is worse".
			rw.lower = strings.Contains(rw.measure, "p99") || strings.HasPrefix(rw.measure, "start")
			for i, c := range cells[1:] {
				if v, ok := cellRatio(c); ok {
					rw.ratio[header[i]] = v
				}
			}
			if len(rw.ratio) > 0 {
				t.rows = append(t.rows, rw)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return table{}, err
	}
	if len(t.rows) == 0 {
		return table{}, errors.New("no row with a ratio to direct")
	}
	return t, nil
}

// cellRatio reads R from a cell "V (R×)".
func cellRatio(c string) (float64, bool) {
	i := strings.LastIndex(c, "(")
	j := strings.LastIndex(c, "×)")
	if i < 0 || j < i {
		return 0, false
	}
	v, err := strconv.ParseFloat(c[i+1:j], 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, false
	}
	return v, true
}

// The Okabe–Ito palette: told apart with any colour vision.
var palette = []string{"#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442"}

const (
	width    = 900
	labelW   = 230 // the measure names, left of the bars
	rightPad = 60  // room for the value after the longest bar
	barH     = 12
	rowGap   = 10
	font     = `font-family="DejaVu Sans, Helvetica, Arial, sans-serif"`
)

func render(t table) string {
	var higher, latency, startup []row
	for _, r := range t.rows {
		switch {
		case !r.lower:
			higher = append(higher, r)
		case strings.HasPrefix(r.measure, "start"):
			startup = append(startup, r)
		default:
			latency = append(latency, r)
		}
	}
	var b strings.Builder
	y := 34.0
	// The legend: one swatch per path.
	x := float64(labelW)
	for i, m := range t.modes {
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="12" height="12" fill="%s"/>`+"\n", x, y-10, palette[i%len(palette)])
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="13">%s</text>`+"\n", x+17, y, html.EscapeString(m))
		x += 17 + textWidth(m, 13) + 22
	}
	y += 16
	y = panel(&b, t.modes, higher, "throughput: ratio to direct loopback (higher is better)", y)
	y = panel(&b, t.modes, latency, "latency: ratio to direct loopback (lower is better)", y)
	y = panel(&b, t.modes, startup, "start-up: ratio to direct (lower is better)", y)
	for _, n := range t.notes {
		y += 16
		fmt.Fprintf(&b, `<text x="10" y="%.0f" font-size="11" fill="#555">%s</text>`+"\n", y, html.EscapeString(n))
	}
	y += 12
	inner := b.String()
	var out strings.Builder
	fmt.Fprintf(&out, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%.0f" viewBox="0 0 %d %.0f" %s>`+"\n", width, y, width, y, font)
	fmt.Fprintf(&out, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&out, `<text x="10" y="18" font-size="15" font-weight="bold">nsbind: each path's figure over direct loopback's (direct = 1×)</text>`+"\n")
	out.WriteString(inner)
	out.WriteString("</svg>\n")
	return out.String()
}

// panel draws one group of measures from y and returns where it ends.
func panel(b *strings.Builder, modes []string, rows []row, title string, y float64) float64 {
	if len(rows) == 0 {
		return y
	}
	y += 20
	fmt.Fprintf(b, `<text x="10" y="%.0f" font-size="13" font-weight="bold">%s</text>`+"\n", y, html.EscapeString(title))
	y += 10
	top0 := y
	maxV := 1.0
	for _, r := range rows {
		for _, v := range r.ratio {
			maxV = math.Max(maxV, v)
		}
	}
	step := niceStep(maxV)
	axisMax := math.Ceil(maxV*1.05/step) * step
	plotW := float64(width - labelW - rightPad)
	xOf := func(v float64) float64 { return float64(labelW) + v/axisMax*plotW }

	// Rows first, to know the panel's height for the grid.
	var bars strings.Builder
	for _, r := range rows {
		n := 0
		for _, m := range modes {
			if _, ok := r.ratio[m]; ok {
				n++
			}
		}
		h := float64(n*barH) + rowGap
		fmt.Fprintf(&bars, `<text x="%d" y="%.1f" font-size="12" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n",
			labelW-8, y+float64(n*barH)/2+rowGap/2, html.EscapeString(shortName(r.measure)))
		by := y + rowGap/2
		for i, m := range modes {
			v, ok := r.ratio[m]
			if !ok {
				continue
			}
			fmt.Fprintf(&bars, `<rect x="%d" y="%.1f" width="%.1f" height="%d" fill="%s"><title>%s, %s: %.2f×</title></rect>`+"\n",
				labelW, by, xOf(v)-float64(labelW), barH-2, palette[i%len(palette)], html.EscapeString(r.measure), html.EscapeString(m), v)
			fmt.Fprintf(&bars, `<text x="%.1f" y="%.1f" font-size="10" dominant-baseline="middle" fill="#333" stroke="white" stroke-width="3" paint-order="stroke">%.2f×</text>`+"\n",
				xOf(v)+4, by+float64(barH-2)/2, v)
			by += barH
		}
		y += h
	}
	bottom := y
	// The grid and the axis under the bars.
	for v := 0.0; v <= axisMax+step/2; v += step {
		x := xOf(v)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e4e4e4"/>`+"\n", x, top0, x, bottom)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="10" text-anchor="middle" fill="#555">%s×</text>`+"\n", x, bottom+13, trimFloat(v))
	}
	// The 1× line under the bars, so that their values stay readable.
	x1 := xOf(1)
	fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#222" stroke-width="1.5" stroke-dasharray="4 3"/>`+"\n", x1, top0-4, x1, bottom)
	b.WriteString(bars.String())
	fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#888"/>`+"\n", labelW, top0, labelW, bottom)
	return bottom + 18
}

// niceStep is a grid step of 1, 2 or 5 times a power of ten giving about
// four to ten lines up to max.
func niceStep(max float64) float64 {
	raw := max / 6
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func trimFloat(v float64) string {
	return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64)
}

// shortName drops a measure's unit: a ratio has none.
func shortName(m string) string {
	if i := strings.LastIndex(m, " ("); i > 0 && strings.HasSuffix(m, ")") {
		return m[:i]
	}
	return m
}

// textWidth estimates the width of s in a sans-serif font of size px.
func textWidth(s string, px float64) float64 {
	return float64(len([]rune(s))) * px * 0.6
}
