package chat

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
)

// roomShards is the number of independently locked parts of the room table.
const roomShards = 64

// roomTable maps room names to live rooms, sharded by name hash. A room stays
// in the table while it has references (memberships, in-flight commits,
// joins in progress) and is dropped at zero; the next use reloads its head
// from the store.
type roomTable struct {
	shards [roomShards]roomShard
}

type roomShard struct {
	mu    sync.Mutex // guards rooms and every room's refs; taken last
	rooms map[string]*room
}

func newRoomTable() *roomTable {
	t := &roomTable{}
	for i := range t.shards {
		t.shards[i].rooms = map[string]*room{}
	}
	return t
}

func (t *roomTable) shard(name string) *roomShard {
	h := uint32(2166136261) // FNV-1a
	for i := 0; i < len(name); i++ {
		h ^= uint32(name[i])
		h *= 16777619
	}
	return &t.shards[h%roomShards]
}

// acquire returns the room called name with one more reference, creating it
// (not yet loaded) when absent.
func (t *roomTable) acquire(name string) *room {
	sh := t.shard(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r := sh.rooms[name]
	if r == nil {
		r = &room{
			name:   name,
			shard:  sh,
			users:  map[string]int{},
			typing: map[string]time.Time{},
		}
		sh.rooms[name] = r
	}
	r.refs++
	return r
}

// retain adds a reference to a room the caller already holds one on.
func (t *roomTable) retain(r *room) {
	r.shard.mu.Lock()
	r.refs++
	r.shard.mu.Unlock()
}

// release drops one reference and forgets the room at zero, stopping its
// log feed outside the shard's lock.
func (t *roomTable) release(r *room) {
	sh := r.shard
	var stop func()
	sh.mu.Lock()
	r.refs--
	if r.refs <= 0 && sh.rooms[r.name] == r {
		delete(sh.rooms, r.name)
		stop, r.stopFeed = r.stopFeed, nil
	}
	sh.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// count returns how many rooms are in memory (for tests).
func (t *roomTable) count() int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		n += len(sh.rooms)
		sh.mu.Unlock()
	}
	return n
}

// room is one chat room's in-memory state on this instance: its members
// and its feed from the log. The log (SharedLog) holds the messages.
//
// Lock order: seqMu, then mu, then the shard's mu. The log's feed takes mu
// (and a release the shard's mu) but never seqMu. chainMu is taken alone.
type room struct {
	name  string
	shard *roomShard
	refs  int // guarded by shard.mu

	// seqMu guards loading: reading the head from the log and starting the
	// feed happen once, under it.
	seqMu  sync.Mutex
	loaded bool // guarded by seqMu
	// stopFeed ends the room's feed. Written under seqMu by the loader
	// while it holds a reference; taken under the shard's mu by the
	// release that drops the room.
	stopFeed func()

	// chainMu guards chains: per writer (user and sender_session), the
	// Sends waiting to be placed in the log (order.go). Taken alone, never
	// with another room lock.
	chainMu sync.Mutex
	chains  map[string]*chain

	// mu guards everything below: membership and the committed head.
	// Deliveries happen under it, so a member registered under mu sees
	// exactly the messages with seq > committed at that time.
	mu        sync.Mutex
	committed uint64
	members   []*membership
	users     map[string]int       // user -> streams of that user in the room
	typing    map[string]time.Time // user -> last relayed typing indicator
}

// membership is one stream's presence in one room.
type membership struct {
	sess *session
	room *room
	idx  int // position in room.members; guarded by room.mu
	// skip is the resume position of a member that resumed after this
	// instance's head (a shared log's feed lags another instance's): the
	// feed's messages up to it were seen already and are not delivered
	// again. Set before registration.
	skip uint64
	// fence is the sender_seq of this stream's Send to the
	// room whose outcome the log did not confirm, 0 when none: later Sends
	// with a higher sender_seq are refused until it is resent (order.go).
	fence atomic.Uint64
	// chain is the chain of this stream's writer in the room for
	// chainSession (the sender_session of its last Send), so that a Send
	// finds it without building the writer's name. Owned by the stream's
	// receive loop (enqueue).
	chain        *chain
	chainSession string
}

// replayJob asks a session's writer to replay [from, to] of m's room from
// the log.
type replayJob struct {
	m        *membership
	from, to uint64 // inclusive
}

// deliver queues it to m's stream. Caller holds m.room.mu. Never blocks.
//
// A resuming membership needs no buffer: its Joined and replay job were
// queued under the same lock that registered it, so every live message (seq
// > the replay's end) lands behind the job in the FIFO queue, and the writer
// replays before it sends them: no gap, no duplicate at the seam.
func (m *membership) deliver(it item, size int) { m.sess.push(it, size) }

// addMember registers m (caller holds r.mu) and tells the other members when
// m's user was not present before.
func (r *room) addMember(m *membership) {
	user := m.sess.user
	r.users[user]++
	if r.users[user] == 1 {
		r.broadcastEvent(presenceEvent(r.name, user, chatv1.Presence_KIND_JOINED), nil)
	}
	m.idx = len(r.members)
	r.members = append(r.members, m)
}

// removeMember unregisters m (caller holds r.mu) and tells the others when m
// was its user's last stream in the room.
func (r *room) removeMember(m *membership) {
	last := len(r.members) - 1
	if m.idx > last || r.members[m.idx] != m {
		return
	}
	r.members[m.idx] = r.members[last]
	r.members[m.idx].idx = m.idx
	r.members[last] = nil
	r.members = r.members[:last]
	user := m.sess.user
	r.users[user]--
	if r.users[user] <= 0 {
		delete(r.users, user)
		delete(r.typing, user)
		r.broadcastEvent(presenceEvent(r.name, user, chatv1.Presence_KIND_LEFT), nil)
	}
}

// broadcastEvent queues ev to every member except those for which skip
// returns true. Caller holds r.mu.
func (r *room) broadcastEvent(ev *chatv1.ServerEvent, skip func(*membership) bool) {
	it := item{ev: ev}
	for _, m := range r.members {
		if skip == nil || !skip(m) {
			m.deliver(it, controlItemBytes)
		}
	}
}

// memberList returns the distinct users present, sorted. Caller holds r.mu.
func (r *room) memberList() []string {
	out := make([]string, 0, len(r.users))
	for u := range r.users {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}

func presenceEvent(room, user string, kind chatv1.Presence_Kind) *chatv1.ServerEvent {
	return &chatv1.ServerEvent{Event: &chatv1.ServerEvent_Presence{Presence: &chatv1.Presence{
		Room: room, User: user, Kind: kind}}}
}
