//go:build race

package main

// raceBuild is true in a binary built with the race detector, whose
// sync.Pool drops a quarter of what is put in it (Go's splice pipes among
// them, closed only at a later garbage collection).
const raceBuild = true
