//go:build race

package main

// raceEnabled builds the agent under test with -race too.
const raceEnabled = true
