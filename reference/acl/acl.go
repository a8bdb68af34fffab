// Package acl answers "may this user enter this room, document or match?"
// from a small YAML file:
//
//	rooms:
//	  ops: [alice, bob]     # only alice and bob may join room "ops"
//	documents:
//	  plan: [alice]
//	matches:
//	  final: [carol, dave]
//
// Anything not listed is open to every authenticated user. A listed name with
// an empty list ([]) is closed to everyone. The file is decoded strictly: an
// unknown field, a duplicate key or a value of the wrong type is an error that
// names the file, the line and the field.
package acl

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/bidikit/bidikit/internal/strictyaml"
)

// Kind is the kind of thing a list guards.
type Kind string

// The kinds an ACL file can list, one top-level key each.
const (
	Room     Kind = "room"     // chat rooms, key "rooms"
	Document Kind = "document" // collab documents, key "documents"
	Match    Kind = "match"    // game matches, key "matches"
)

// file is the on-disk shape.
type file struct {
	Rooms     map[string][]string `yaml:"rooms"`
	Documents map[string][]string `yaml:"documents"`
	Matches   map[string][]string `yaml:"matches"`
}

// ACL is a loaded access list. It is immutable after Load/Parse and safe for
// concurrent use. A nil *ACL allows everything.
type ACL struct {
	lists map[Kind]map[string]map[string]struct{}
}

// Open returns an ACL that allows everything (the same as a nil *ACL).
func Open() *ACL { return &ACL{} }

// Load reads and parses the ACL file at path.
func Load(path string) (*ACL, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("acl file: %w", err)
	}
	return Parse(path, data)
}

// Parse parses ACL YAML; name (usually the file path) prefixes every error.
func Parse(name string, data []byte) (*ACL, error) {
	var f file
	if err := strictyaml.Decode(name, data, &f); err != nil {
		return nil, err
	}
	a := &ACL{lists: map[Kind]map[string]map[string]struct{}{}}
	for _, section := range []struct {
		kind Kind
		key  string
		m    map[string][]string
	}{{Room, "rooms", f.Rooms}, {Document, "documents", f.Documents}, {Match, "matches", f.Matches}} {
		if len(section.m) == 0 {
			continue
		}
		names := make([]string, 0, len(section.m))
		for n := range section.m {
			names = append(names, n)
		}
		sort.Strings(names)
		lists := map[string]map[string]struct{}{}
		for _, n := range names {
			if n == "" {
				return nil, fmt.Errorf("%s: %s: empty %s name", name, section.key, section.kind)
			}
			users := map[string]struct{}{}
			for i, u := range section.m[n] {
				if strings.TrimSpace(u) == "" {
					return nil, fmt.Errorf("%s: %s.%s[%d]: empty user id", name, section.key, n, i)
				}
				users[u] = struct{}{}
			}
			lists[n] = users
		}
		a.lists[section.kind] = lists
	}
	return a, nil
}

// Allowed reports whether user may enter the named room, document or match.
// Names not listed are open; an unknown kind is treated as not listed.
func (a *ACL) Allowed(kind Kind, name, user string) bool {
	if a == nil {
		return true
	}
	users, listed := a.lists[kind][name]
	if !listed {
		return true
	}
	_, ok := users[user]
	return ok
}

// Listed reports whether kind/name is restricted by the file.
func (a *ACL) Listed(kind Kind, name string) bool {
	if a == nil {
		return false
	}
	_, ok := a.lists[kind][name]
	return ok
}

// Scoped is an ACL narrowed to one kind. It has the
// Allowed(name, user string) bool shape the services take (chat.ACL, and the
// same for collab and game).
type Scoped struct {
	acl  *ACL
	kind Kind
}

// Allowed reports whether user may enter name.
func (s Scoped) Allowed(name, user string) bool { return s.acl.Allowed(s.kind, name, user) }

// Rooms returns the chat-room view of a (satisfies chat.ACL).
func (a *ACL) Rooms() Scoped { return Scoped{a, Room} }

// Documents returns the collab-document view of a.
func (a *ACL) Documents() Scoped { return Scoped{a, Document} }

// Matches returns the game-match view of a.
func (a *ACL) Matches() Scoped { return Scoped{a, Match} }
