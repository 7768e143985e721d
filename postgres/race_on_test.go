//go:build race

package postgres

// raceOn: the race detector slows the worker processes several times, so
// the fault test runs fewer items (the kills, restarts and cuts stay).
const raceOn = true
