//go:build !linux

package main

// The fault servers and the seccomp filter of the tests exist on Linux
// only.

func faultServer(args []string) int { return 2 }

func seccompNoUserns(args []string) int { return 2 }
