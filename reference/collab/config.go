package collab

import (
	"github.com/spf13/pflag"

	"github.com/bidikit/bidikit/reference/streamhost"
	"github.com/bidikit/bidikit/reference/validate"
)

// Config bounds and tunes the collab service. Every bound has a named
// overflow action, documented on its field.
type Config struct {
	// MaxDocRunes bounds a document's length in code points. A submit that
	// would grow a document past it is answered with Error INVALID_ARGUMENT
	// (field submit.op) and not applied.
	MaxDocRunes int
	// MaxInsertRunes bounds the code points one submit inserts: Error
	// INVALID_ARGUMENT (field submit.op).
	MaxInsertRunes int
	// SubmitRate is the per-user budget of submits and cursor moves per
	// second, shared by all of a user's streams (<= 0: unlimited).
	// Over it: Error RESOURCE_EXHAUSTED (submits) or a silent drop (cursors).
	SubmitRate float64
	// SubmitBurst is the bucket size of SubmitRate.
	SubmitBurst int
	// FloodStrikes is how many rate-limited events in a row end the stream
	// with RESOURCE_EXHAUSTED.
	FloodStrikes int
	// QueueEvents and QueueBytes bound each stream's send queue; overflow
	// ends the stream with RESOURCE_EXHAUSTED (slow consumer).
	QueueEvents int
	QueueBytes  int
	// SnapshotEvery stores a text snapshot every that many versions.
	SnapshotEvery int
	// RetainOps is the in-memory window of recent operations per document:
	// a submit based on an older version fails with FAILED_PRECONDITION
	// ("base version too old, reopen"), and Open.from_version older than it
	// gets a snapshot with version_not_retained.
	RetainOps int
	// MaxDocsPerStream bounds the documents one stream has open: Error
	// RESOURCE_EXHAUSTED (field open.document).
	MaxDocsPerStream int
	// Access, when set, decides who may open a document (acl.Scoped fits);
	// a refused Open gets Error PERMISSION_DENIED. Nil allows everyone.
	Access streamhost.ACL
}

// DefaultConfig returns the defaults behind the --collab-* flags.
func DefaultConfig() Config {
	return Config{
		MaxDocRunes:      1 << 20,
		MaxInsertRunes:   64 << 10,
		SubmitRate:       200,
		SubmitBurst:      400,
		FloodStrikes:     100,
		QueueEvents:      4096,
		QueueBytes:       8 << 20,
		SnapshotEvery:    1000,
		RetainOps:        1000,
		MaxDocsPerStream: 16,
	}
}

// RegisterFlags adds the --collab-* flags, defaulting to c's values.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	fs.IntVar(&c.MaxDocRunes, "collab-max-doc-runes", c.MaxDocRunes, "collab: longest document in code points (longer: submit refused with INVALID_ARGUMENT)")
	fs.IntVar(&c.MaxInsertRunes, "collab-max-insert-runes", c.MaxInsertRunes, "collab: most code points one submit may insert")
	fs.Float64Var(&c.SubmitRate, "collab-submit-rate", c.SubmitRate, "collab: submits and cursor moves per second per user (<= 0: unlimited)")
	fs.IntVar(&c.SubmitBurst, "collab-submit-burst", c.SubmitBurst, "collab: burst of --collab-submit-rate")
	fs.IntVar(&c.FloodStrikes, "collab-flood-strikes", c.FloodStrikes, "collab: rate-limited events in a row that end the stream with RESOURCE_EXHAUSTED")
	fs.IntVar(&c.QueueEvents, "collab-queue-events", c.QueueEvents, "collab: events a stream's send queue holds before the slow reader is cut off")
	fs.IntVar(&c.QueueBytes, "collab-queue-bytes", c.QueueBytes, "collab: bytes a stream's send queue holds before the slow reader is cut off")
	fs.IntVar(&c.SnapshotEvery, "collab-snapshot-every", c.SnapshotEvery, "collab: store a text snapshot every N versions")
	fs.IntVar(&c.RetainOps, "collab-retain-ops", c.RetainOps, "collab: recent operations kept in memory per document for transforming late submits and replaying reopens")
	fs.IntVar(&c.MaxDocsPerStream, "collab-max-docs-per-stream", c.MaxDocsPerStream, "collab: documents one stream may have open")
	validate.BindFlag(fs, "collab-max-doc-runes", "Collab.MaxDocRunes")
	validate.BindFlag(fs, "collab-max-insert-runes", "Collab.MaxInsertRunes")
	validate.BindFlag(fs, "collab-submit-rate", "Collab.SubmitRate")
	validate.BindFlag(fs, "collab-submit-burst", "Collab.SubmitBurst")
	validate.BindFlag(fs, "collab-flood-strikes", "Collab.FloodStrikes")
	validate.BindFlag(fs, "collab-queue-events", "Collab.QueueEvents")
	validate.BindFlag(fs, "collab-queue-bytes", "Collab.QueueBytes")
	validate.BindFlag(fs, "collab-snapshot-every", "Collab.SnapshotEvery")
	validate.BindFlag(fs, "collab-retain-ops", "Collab.RetainOps")
	validate.BindFlag(fs, "collab-max-docs-per-stream", "Collab.MaxDocsPerStream")
}

// check names the first bad setting's field (a *validate.SettingError).
func (c Config) check() error {
	switch {
	case c.MaxDocRunes < 1:
		return validate.Settingf("Collab.MaxDocRunes", "is %d, want >= 1", c.MaxDocRunes)
	case c.MaxInsertRunes < 1:
		return validate.Settingf("Collab.MaxInsertRunes", "is %d, want >= 1", c.MaxInsertRunes)
	case c.SubmitRate > 0 && c.SubmitBurst < 1:
		return validate.Settingf("Collab.SubmitBurst", "is %d, want >= 1", c.SubmitBurst)
	case c.FloodStrikes < 1:
		return validate.Settingf("Collab.FloodStrikes", "is %d, want >= 1", c.FloodStrikes)
	case c.QueueEvents < 16:
		return validate.Settingf("Collab.QueueEvents", "is %d, want >= 16", c.QueueEvents)
	case c.QueueBytes < 4096:
		return validate.Settingf("Collab.QueueBytes", "is %d, want >= 4096", c.QueueBytes)
	case c.SnapshotEvery < 1:
		return validate.Settingf("Collab.SnapshotEvery", "is %d, want >= 1", c.SnapshotEvery)
	case c.RetainOps < 1:
		return validate.Settingf("Collab.RetainOps", "is %d, want >= 1", c.RetainOps)
	case c.MaxDocsPerStream < 1:
		return validate.Settingf("Collab.MaxDocsPerStream", "is %d, want >= 1", c.MaxDocsPerStream)
	}
	return nil
}
