package forward

import (
	"errors"
	"testing"
)

func TestParseToHost(t *testing.T) {
	tests := []struct {
		name, arg string
		want      ToHostSpec
		wantErr   bool
	}{
		{name: "port only", arg: "5432", want: ToHostSpec{5432, 5432, TCP}},
		{name: "host port", arg: "5432:15432", want: ToHostSpec{5432, 15432, TCP}},
		{name: "udp", arg: "53:5353/udp", want: ToHostSpec{53, 5353, UDP}},
		{name: "upper case proto", arg: "6379/TCP", want: ToHostSpec{6379, 6379, TCP}},
		{name: "empty", arg: "", wantErr: true},
		{name: "zero", arg: "0", wantErr: true},
		{name: "zero host port", arg: "80:0", wantErr: true},
		{name: "too big", arg: "70000", wantErr: true},
		{name: "address", arg: "127.0.0.1:80", wantErr: true},
		{name: "range", arg: "80-81", wantErr: true},
		{name: "bad proto", arg: "80/sctp", wantErr: true},
		{name: "empty host port", arg: "80:", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseToHost(tt.arg)
			if tt.wantErr {
				var te *ToHostError
				if !errors.As(err, &te) {
					t.Fatalf("ParseToHost(%q) = %v, %v; want a *ToHostError", tt.arg, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseToHost(%q) = %v, %v; want %v", tt.arg, got, err, tt.want)
			}
		})
	}
}

func FuzzParseToHost(f *testing.F) {
	for _, s := range []string{"5432", "53:5353/udp", "1:65535/tcp"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		spec, err := ParseToHost(s)
		if err != nil {
			return
		}
		again, err := ParseToHost(spec.String())
		if err != nil || again != spec {
			t.Fatalf("ParseToHost(%q) = %v; its String %q reads back as %v, %v", s, spec, spec.String(), again, err)
		}
	})
}
