package registry_test

import (
	"testing"

	"github.com/bidikit/bidikit/internal/registry"
)

func TestRegistry(t *testing.T) {
	r := registry.New[int]("widget")
	r.Register("b", 2)
	r.Register("a", 1)
	if v, ok := r.Lookup("a"); !ok || v != 1 {
		t.Fatalf("Lookup(a) = %d, %v", v, ok)
	}
	if got := r.Names(); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Fatalf("Names() = %v, want [a b]", got)
	}
	if _, err := r.Get("c"); err == nil || err.Error() != `unknown widget "c" (known: [a b])` {
		t.Fatalf("Get(c) error = %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a duplicate name did not panic")
		}
	}()
	r.Register("a", 3)
}
