package streamhost

// ACL decides who may enter a room, document or match: Allowed reports
// whether user may enter the one called name. Implementations must be safe
// for concurrent use (receive loops call it); acl.Scoped is one. Services
// take a nil ACL as "everything open".
type ACL interface {
	Allowed(name, user string) bool
}
