package main

import (
	"encoding/json"
	"testing"
)

// The generator writes records by hand; they must be json.Marshal's bytes.
func TestAppendRecordJSONMatchesMarshal(t *testing.T) {
	for _, i := range []int64{0, 1, 2, 3, 7, 999, 1000, 1001, 123456789, 9_999_999} {
		want, err := json.Marshal(newRecord(i))
		if err != nil {
			t.Fatal(err)
		}
		if got := appendRecordJSON(nil, newRecord(i)); string(got) != string(want) {
			t.Errorf("record %d:\n got %s\nwant %s", i, got, want)
		}
	}
}
