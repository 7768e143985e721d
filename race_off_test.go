//go:build !race

package checkpoint

// raceOn: see race_on_test.go.
const raceOn = false
