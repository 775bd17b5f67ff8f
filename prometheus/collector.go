// Package redisadapterprom exports the Stats of a redisadapter Adapter, or
// of an Emitter, to Prometheus, read at each scrape:
//
//	prometheus.MustRegister(redisadapterprom.New(a))
//	prometheus.MustRegister(redisadapterprom.NewEmitter(e)) // a job worker's Emitter
//
// It is a module of its own, as go-redis's redisprometheus is, so that the
// library's users who do not use Prometheus do not get it in their module
// graph.
//
// Every field of redisadapter.Stats is a metric, named by the table in
// metrics.go: a counter for a uint64 field ("_total"), a gauge for an int,
// an int64, a time.Duration (in seconds) or a bool (1 or 0). The names are "redisadapter_<name>" (an Emitter's:
// "redisadapter_emitter_<name>"), with WithNamespace, WithSubsystem and
// WithConstLabels to change them, as redisprometheus's namespace and
// subsystem do. The connections and the subscriptions are one gauge each
// with a kind label: redisadapter_connections{kind="pipelined"}. The
// help text of each metric says what it means and when to alert; the
// metrics table in docs/operations.md says the same.
package redisadapterprom

import (
	"reflect"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/blogstack/redisadapter"
)

// Collector is a prometheus.Collector of an Adapter's or an Emitter's
// Stats.
type Collector struct {
	stats   func() reflect.Value // a snapshot of the Stats struct
	metrics []collected
}

// collected is one metric of the table, as this collector exports it.
type collected struct {
	desc  *prometheus.Desc
	field int // index in the Stats struct
	typ   prometheus.ValueType
}

// An Option changes the names or labels of a Collector's metrics.
type Option func(*config)

type config struct {
	namespace, subsystem string
	labels               prometheus.Labels
}

// WithNamespace replaces the metrics' namespace, "redisadapter".
func WithNamespace(namespace string) Option { return func(c *config) { c.namespace = namespace } }

// WithSubsystem sets the metrics' subsystem, between the namespace and the
// name: "" for an Adapter, "emitter" for an Emitter unless set.
func WithSubsystem(subsystem string) Option { return func(c *config) { c.subsystem = subsystem } }

// WithConstLabels adds labels of fixed values to every metric (a second
// adapter in one process: {"adapter": "chat"}).
func WithConstLabels(labels prometheus.Labels) Option {
	return func(c *config) { c.labels = labels }
}

// New returns a Collector of a's Stats.
func New(a *redisadapter.Adapter, opts ...Option) *Collector {
	return newCollector(func() reflect.Value { return reflect.ValueOf(a.Stats()) }, reflect.TypeFor[redisadapter.Stats](), "", opts)
}

// NewEmitter returns a Collector of e's Stats (every Emitter derived from
// one NewEmitter shares them): the metrics of the table whose field
// EmitterStats has, under the subsystem "emitter".
func NewEmitter(e redisadapter.Emitter, opts ...Option) *Collector {
	return newCollector(func() reflect.Value { return reflect.ValueOf(e.Stats()) }, reflect.TypeFor[redisadapter.EmitterStats](), "emitter", opts)
}

func newCollector(stats func() reflect.Value, t reflect.Type, subsystem string, opts []Option) *Collector {
	cfg := config{namespace: "redisadapter", subsystem: subsystem}
	for _, o := range opts {
		o(&cfg)
	}
	c := &Collector{stats: stats}
	for _, m := range table {
		f, ok := t.FieldByName(m.field)
		if !ok {
			continue // not an Emitter's
		}
		typ, ok := valueType(f.Type)
		if !ok {
			continue // TestEveryFieldIsExported fails
		}
		labels := prometheus.Labels{}
		for k, v := range cfg.labels {
			labels[k] = v
		}
		if m.kind != "" {
			labels["kind"] = m.kind
		}
		c.metrics = append(c.metrics, collected{
			desc:  prometheus.NewDesc(prometheus.BuildFQName(cfg.namespace, cfg.subsystem, m.name), m.help, nil, labels),
			field: f.Index[0],
			typ:   typ,
		})
	}
	return c
}

// valueType is how a field of type t is exported: uint64 as a counter, int,
// int64, bool and time.Duration (in seconds: name it "_seconds") as gauges.
func valueType(t reflect.Type) (prometheus.ValueType, bool) {
	switch t.Kind() {
	case reflect.Uint64:
		return prometheus.CounterValue, true
	case reflect.Int, reflect.Int64, reflect.Bool:
		return prometheus.GaugeValue, true
	}
	return 0, false
}

var durationType = reflect.TypeFor[time.Duration]()

// Describe sends the descriptor of each metric.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.metrics {
		ch <- m.desc
	}
}

// Collect reads the Stats once and sends each metric.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	for _, m := range c.metrics {
		var v float64
		switch f := s.Field(m.field); f.Kind() {
		case reflect.Uint64:
			v = float64(f.Uint())
		case reflect.Int, reflect.Int64:
			if f.Type() == durationType {
				v = time.Duration(f.Int()).Seconds()
			} else {
				v = float64(f.Int())
			}
		case reflect.Bool:
			if f.Bool() {
				v = 1
			}
		}
		ch <- prometheus.MustNewConstMetric(m.desc, m.typ, v)
	}
}
