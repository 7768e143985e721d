//go:build !race

package postgres

const raceOn = false
