//go:build !linux

package main

// The servers of the --direct tests are Linux only.

func directTestServer([]string) (int, bool) { return 0, false }

func denySeccompForTest() {}
