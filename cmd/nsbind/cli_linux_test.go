package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// completeInBash sources the script of nsbind completion bash, as a user's
// shell does (with the bash-completion package it needs), and has bash's
// completion entry point complete each line; it returns COMPREPLY per line.
// nsbind on the PATH is this test binary as the CLI, in an otherwise empty
// directory, which is also the working directory.
const completeInBash = `source /usr/share/bash-completion/bash_completion
source <(nsbind completion bash)
for line in "$@"; do
  COMP_LINE=$line; COMP_POINT=${#line}
  read -ra COMP_WORDS <<<"$line"
  [[ $line == *" " ]] && COMP_WORDS+=("")
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  COMPREPLY=()
  __start_nsbind nsbind 2>/dev/null
  echo "${COMPREPLY[*]}"
done
`

// Acceptance: nsbind completion bash, sourced in bash, completes
// "nsbind r<TAB>" to run and "nsbind run --pub<TAB>" to --publish.
func TestBashCompletion(t *testing.T) {
	if _, err := os.Stat("/usr/share/bash-completion/bash_completion"); err != nil {
		if os.Getenv("NSBIND_TEST_REQUIRE_USERNS") == "1" {
			t.Fatalf("bash completion needs the bash-completion package (scripts/test.sh installs it): %v", err)
		}
		t.Skipf("bash completion needs the bash-completion package: %v", err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	wrapper := "#!/bin/sh\nexec '" + self + "' __nsbind \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "nsbind"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ line, want string }{
		{"nsbind r", "run"},
		{"nsbind run --pub", "--publish"},
		{"nsbind run --log-l", "--log-level"},
		{"nsbind run --log-level ", "debug info warn error"},
		{"nsbind run --net=", "relay veth"},
		{"nsbind help r", "run"},
		{"nsbind do", "doctor"},
		{"nsbind completion ", "bash zsh fish"},
		// After COMMAND the words are the server's: no flag of run.
		{"nsbind run -p 80:8080 ./server --pu", ""},
	}
	args := []string{"-c", completeInBash, "bash"}
	for _, tt := range tests {
		args = append(args, tt.line)
	}
	cmd := exec.Command("bash", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(got) != len(tests) {
		t.Fatalf("bash printed %d lines for %d completions:\n%s", len(got), len(tests), out)
	}
	for i, tt := range tests {
		if got[i] != tt.want {
			t.Errorf("%q<TAB>: %q, want %q", tt.line, got[i], tt.want)
		}
	}
}
