// Package metrics holds the bidikit_* Prometheus collectors that every
// reference service updates. One Set is created per server and registered on
// that server's registry, so several servers in one process (tests) do not
// collide.
package metrics

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
)

// Set is the bidikit_* metrics of one server. All fields are safe for
// concurrent use.
type Set struct {
	// ActiveStreams counts open service streams, by service.
	ActiveStreams *prometheus.GaugeVec
	// Members counts room/document/match memberships, by service.
	Members *prometheus.GaugeVec
	// QueueDepth is the total of items waiting in subscriber send queues, by service.
	QueueDepth *prometheus.GaugeVec
	// SlowConsumerCuts counts streams ended because their send queue overflowed.
	SlowConsumerCuts *prometheus.CounterVec
	// RateLimited counts events refused by a rate limit, by service and kind.
	RateLimited *prometheus.CounterVec
	// Rejected counts client events refused as invalid, by service and field.
	Rejected *prometheus.CounterVec
	// Committed counts durably committed records (messages, operations), by service.
	Committed *prometheus.CounterVec
	// Delivered counts events written to subscribers, by service.
	Delivered *prometheus.CounterVec
	// Goroutines reports runtime.NumGoroutine at scrape time.
	Goroutines prometheus.GaugeFunc
	// ShuttingDown is 1 once graceful shutdown began.
	ShuttingDown prometheus.Gauge
}

// New creates the collectors and registers them on reg.
func New(reg prometheus.Registerer) *Set {
	s := &Set{
		ActiveStreams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bidikit_active_streams", Help: "Open service streams."}, []string{"service"}),
		Members: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bidikit_members", Help: "Memberships in rooms, documents or matches."}, []string{"service"}),
		QueueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bidikit_send_queue_depth", Help: "Items waiting in subscriber send queues."}, []string{"service"}),
		SlowConsumerCuts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bidikit_slow_consumer_cuts_total", Help: "Streams ended because their send queue overflowed."}, []string{"service"}),
		RateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bidikit_rate_limited_total", Help: "Client events refused by a rate limit."}, []string{"service", "kind"}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bidikit_rejected_total", Help: "Client events refused as invalid."}, []string{"service", "field"}),
		Committed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bidikit_committed_total", Help: "Durably committed records."}, []string{"service"}),
		Delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bidikit_delivered_total", Help: "Events written to subscribers."}, []string{"service"}),
		Goroutines: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "bidikit_goroutines", Help: "Goroutines in the server process."},
			func() float64 { return float64(runtime.NumGoroutine()) }),
		ShuttingDown: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bidikit_shutting_down", Help: "1 once graceful shutdown began."}),
	}
	reg.MustRegister(s.ActiveStreams, s.Members, s.QueueDepth, s.SlowConsumerCuts, s.RateLimited,
		s.Rejected, s.Committed, s.Delivered, s.Goroutines, s.ShuttingDown)
	return s
}

// Discard returns a Set registered nowhere, for unit tests of one service.
func Discard() *Set { return New(prometheus.NewRegistry()) }
