package store

import (
	"bytes"
	"testing"
)

// FuzzDecodeChunk feeds decodeChunk arbitrary bytes: it must never panic,
// and whatever it decodes, encoded again the writer's way, must decode to
// the same records (varints that are not minimal decode as their value, so
// the bytes may differ). The seeds are chunks the writer builds;
// `go test -fuzz FuzzDecodeChunk` explores further.
func FuzzDecodeChunk(f *testing.F) {
	var c chunk
	for seq := uint64(5); seq <= 9; seq += 2 {
		c.add(&Record{Seq: seq, Key: "k", UnixNanos: -int64(seq), Payload: []byte("payload")})
	}
	f.Add(uint64(5), c.data)
	var empty chunk
	empty.add(&Record{Seq: 1})
	f.Add(uint64(1), empty.data)
	f.Add(uint64(1), []byte{0, 200}) // a key longer than the chunk
	f.Fuzz(func(t *testing.T, first uint64, data []byte) {
		var again chunk
		var recs []Record
		err := decodeChunk("s", first, data, func(r Record) error {
			recs = append(recs, r)
			again.add(&r)
			return nil
		})
		if err != nil {
			return
		}
		if again.n > 0 && again.first != first {
			t.Fatalf("decoded a chunk at %d whose first record is %d", first, again.first)
		}
		i := 0
		err = decodeChunk("s", first, again.data, func(r Record) error {
			if i >= len(recs) || r.Seq != recs[i].Seq || r.Key != recs[i].Key || r.UnixNanos != recs[i].UnixNanos ||
				!bytes.Equal(r.Payload, recs[i].Payload) {
				t.Fatalf("record %d: %+v, decoded before as %+v", i, r, recs[min(i, len(recs)-1)])
			}
			i++
			return nil
		})
		if err != nil || i != len(recs) {
			t.Fatalf("encoded again, %d of %d records decode: %v", i, len(recs), err)
		}
	})
}
