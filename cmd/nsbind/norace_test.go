//go:build !race

package main

// raceBuild is true in a binary built with the race detector.
const raceBuild = false
