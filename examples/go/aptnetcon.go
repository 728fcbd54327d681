// Package aptnetcon runs apt_netcon, a streaming detector for Elastic's EQL
// rule "Suspicious APT Package Manager Network Connection", from Go, through
// its C ABI (include/apt_netcon.h) with cgo. Standard library only.
//
//	det, err := aptnetcon.New("") // "" = defaults: the built-in rule apt_netcon_v5
//	if err != nil { ... }         // *aptnetcon.Error: message, config key, line, column
//	defer det.Close()
//	for each record {
//		out, annotated, err := det.Filter(record)
//		forward(out) // always: the record as it came, or with the alert fields
//		_ = annotated // true when out is the completing network event, annotated
//		_ = err       // non-nil: why the record could not be read (counted in Stats)
//	}
//
// # Rule packs
//
// A config with "rules" (a list of built-in names and rule files) or
// "rules_dir" (every .toml and .eql file of a directory) runs a rule pack:
// Filter then returns every record as it came (annotated false), and every
// match is a standalone alert record of its own ("event.kind": "signal",
// its rule's "rule" fields): one record completing k rules gives k alerts,
// in the pack's rule order. Flush hands them over (call it after each
// record whose Filter raised Stats().StandaloneAlerts, and forward its
// Alerts right after the record); FilterChunk appends them to the chunk it
// returns. A rule that does not load makes New fail with every such rule
// listed, unless "skip_broken_rules" is true; RulesReport then lists them,
// with each rule's counters.
//
// # Linking
//
// The module path is example.com/aptnetcon (no public path yet): from
// another module, require it and point it at this directory with a replace
// directive (Go finds it without any download):
//
//	require example.com/aptnetcon v0.0.0
//	replace example.com/aptnetcon => /path/to/apt-netcon/examples/go
//
// The package links against the library built in this repository, or the
// one installed:
//
//	cargo build --release                 (then)  go build / go test
//	make install PREFIX=/usr/local        (then)  go build -tags aptnc_shared
//	cargo build                           (then)  go build -tags aptnc_debug
//
// Without a tag it links target/release/libapt_netcon.a statically — what
// the Quick start's `cargo build --release` makes (the Go program then needs no
// shared library at run time); aptnc_debug links target/debug's instead
// (the test scripts' quicker build). aptnc_shared links the installed shared
// library through `pkg-config apt_netcon` (set PKG_CONFIG_PATH for another
// prefix); the program then loads libapt_netcon.so.1 (its SONAME) at run
// time from the loader's path (ld.so.conf, LD_LIBRARY_PATH, or an rpath
// given with CGO_LDFLAGS="-Wl,-rpath,/prefix/lib"). CGO_CFLAGS and
// CGO_LDFLAGS add to these flags as usual. Go's build cache does not notice
// a changed header or a pkg-config answer that changed: after changing
// either, build with -a or run go clean -cache (tests/go/run.sh folds the
// header's digest into CGO_CFLAGS instead).
//
// # Memory
//
// Go memory is passed to the library only for the duration of a call (the
// library keeps no pointer to it), and what the library returns (owned by
// the detector, valid until its next call) is copied into Go memory before
// the call returns: the slices this package returns are the caller's.
//
// # Goroutines
//
// A Detector holds one stream's state (partial sequences, counters). Its
// methods lock an internal mutex, so calls from several goroutines are
// serialized and harmless (a goroutine may move between OS threads between
// two calls; the library has no thread-local state), but records of
// different streams fed to one Detector interleave into one stream: use one
// Detector per stream. Close it when done; a finalizer frees a Detector
// that was not closed.
package aptnetcon

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo !aptnc_debug,!aptnc_shared LDFLAGS: ${SRCDIR}/../../target/release/libapt_netcon.a -lgcc_s -lutil -lrt -lpthread -lm -ldl
#cgo aptnc_debug,!aptnc_shared LDFLAGS: ${SRCDIR}/../../target/debug/libapt_netcon.a -lgcc_s -lutil -lrt -lpthread -lm -ldl
#cgo aptnc_shared pkg-config: apt_netcon
#include <stdlib.h>
#include <apt_netcon.h>
*/
import "C"

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

// Status is the result of a library call (aptnc_status). The numbers are
// fixed by the C ABI.
type Status uint32

// The statuses of include/apt_netcon.h.
const (
	StatusOK              Status = C.APTNC_STATUS_OK
	StatusUnchanged       Status = C.APTNC_STATUS_UNCHANGED
	StatusAnnotated       Status = C.APTNC_STATUS_ANNOTATED
	StatusNullParameter   Status = C.APTNC_STATUS_NULL_PARAMETER
	StatusInvalidJSON     Status = C.APTNC_STATUS_INVALID_JSON
	StatusInvalidMsgpack  Status = C.APTNC_STATUS_INVALID_MSGPACK
	StatusNotAnObject     Status = C.APTNC_STATUS_NOT_AN_OBJECT
	StatusTooDeep         Status = C.APTNC_STATUS_TOO_DEEP
	StatusTooLarge        Status = C.APTNC_STATUS_TOO_LARGE
	StatusBadTimestamp    Status = C.APTNC_STATUS_BAD_TIMESTAMP
	StatusAnnotateFailed  Status = C.APTNC_STATUS_ANNOTATE_FAILED
	StatusConfigError     Status = C.APTNC_STATUS_CONFIG_ERROR
	StatusRuleError       Status = C.APTNC_STATUS_RULE_ERROR
	StatusPanic           Status = C.APTNC_STATUS_PANIC
	StatusPoisoned        Status = C.APTNC_STATUS_POISONED
	StatusInvalidArgument Status = C.APTNC_STATUS_INVALID_ARGUMENT
)

// String is the library's description of the status (aptnc_status_str).
func (s Status) String() string {
	return C.GoString(C.aptnc_status_str(C.uint32_t(s)))
}

// Error is a failure reported by the library: a detector that could not be
// created (Key names the config key at fault; Line and Column, 1-based, place
// a rule error), or a record passed through unread (Status says why).
type Error struct {
	Status  Status
	Message string // one or more lines
	Key     string // the config key at fault, or ""
	Line    int    // 1-based line of a rule error, or 0
	Column  int    // 1-based column (in characters) of a rule error, or 0
}

func (e *Error) Error() string { return "apt_netcon: " + e.Message }

// ErrClosed is returned by the methods of a Detector after Close.
var ErrClosed = errors.New("apt_netcon: detector is closed")

// Version is the library's version ("MAJOR.MINOR.PATCH").
func Version() string { return C.GoString(C.aptnc_version()) }

// ABIVersion is the library's ABI version; this package is written for
// HeaderABIVersion.
func ABIVersion() uint32 { return uint32(C.aptnc_abi_version()) }

// HeaderABIVersion is the ABI version of the header this package was built with.
const HeaderABIVersion = C.APTNC_ABI_VERSION

// Detector is one stream's detector (see the package comment for goroutines).
type Detector struct {
	mu  sync.Mutex
	det *C.aptnc_detector // nil once closed
}

// New creates a detector from a JSON config object (see the table in
// docs/configuration.md: rule, rule_file, maxspan, exceptions, ...); "" or
// blank text means the defaults. On failure the error is an *Error whose Key
// names the bad config key, or whose Line and Column place a rule error.
func New(configJSON string) (*Detector, error) {
	var cfg *C.uint8_t
	b := []byte(configJSON) // Go memory, read by the library during the call only
	if len(b) > 0 {
		cfg = (*C.uint8_t)(unsafe.Pointer(&b[0]))
	}
	var det *C.aptnc_detector
	var cerr *C.aptnc_error
	st := Status(C.aptnc_init(cfg, C.size_t(len(b)), nil, &det, &cerr))
	runtime.KeepAlive(b)
	if st != StatusOK {
		return nil, takeError(st, cerr)
	}
	d := &Detector{det: det}
	runtime.SetFinalizer(d, (*Detector).Close)
	return d, nil
}

// takeError copies an aptnc_error into an *Error and frees it.
func takeError(st Status, cerr *C.aptnc_error) *Error {
	if cerr == nil {
		return &Error{Status: st, Message: st.String()}
	}
	defer C.aptnc_error_free(cerr)
	e := &Error{
		Status:  Status(C.aptnc_error_status(cerr)),
		Message: C.GoString(C.aptnc_error_message(cerr)),
		Line:    int(C.aptnc_error_line(cerr)),
		Column:  int(C.aptnc_error_column(cerr)),
	}
	if k := C.aptnc_error_key(cerr); k != nil {
		e.Key = C.GoString(k)
	}
	return e
}

// Close frees the detector. Later calls return ErrClosed; Close itself may
// be called any number of times.
func (d *Detector) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.det != nil {
		C.aptnc_free(d.det)
		d.det = nil
		runtime.SetFinalizer(d, nil)
	}
	return nil
}

// bytesArg passes a Go slice to C for the duration of one call.
func bytesArg(b []byte) *C.uint8_t {
	if len(b) == 0 {
		return nil
	}
	return (*C.uint8_t)(unsafe.Pointer(&b[0]))
}

// copyOut copies what the library returned (owned by the detector, valid
// until its next call) into Go memory.
func copyOut(p *C.uint8_t, n C.size_t) []byte {
	out := make([]byte, int(n))
	if n > 0 {
		copy(out, unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n)))
	}
	return out
}

// filter runs one aptnc_filter / aptnc_filter_msgpack call under the lock.
func (d *Detector) filter(in []byte, msgpack bool) ([]byte, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.det == nil {
		return in, false, ErrClosed
	}
	var out *C.uint8_t
	var outLen C.size_t
	var st Status
	if msgpack {
		st = Status(C.aptnc_filter_msgpack(d.det, bytesArg(in), C.size_t(len(in)), &out, &outLen))
	} else {
		st = Status(C.aptnc_filter(d.det, bytesArg(in), C.size_t(len(in)), &out, &outLen))
	}
	runtime.KeepAlive(in)
	switch st {
	case StatusAnnotated:
		return copyOut(out, outLen), true, nil
	case StatusUnchanged:
		return in, false, nil
	default:
		return in, false, &Error{Status: st, Message: st.String()}
	}
}

// Filter evaluates one JSON record (one Elastic Defend event, without its
// line terminator). out is always the record to forward: the network event
// that completes the rule's sequence comes back with the alert fields added
// (annotated is true; out is a new slice), every other record as it came
// (out is record itself, not a copy). A non-nil err says why the record
// could not be read (an *Error: invalid JSON, not an object, too large,
// ...); the record is still to be forwarded, and the reason is counted in
// Stats. After Close, err is ErrClosed.
func (d *Detector) Filter(record []byte) (out []byte, annotated bool, err error) {
	return d.filter(record, false)
}

// FilterChunk evaluates one Fluent Bit chunk: MessagePack records
// concatenated, each [[EventTime, {metadata}], {body}] (or the legacy
// [EventTime, {body}]; group markers pass through). When some record was
// annotated, out is a new chunk in which only those record bodies differ and
// annotated is true; otherwise out is chunk itself. A chunk that cannot be
// walked gives an *Error with StatusInvalidMsgpack (forward it unchanged);
// records inside a chunk that cannot be read are passed through and counted.
func (d *Detector) FilterChunk(chunk []byte) (out []byte, annotated bool, err error) {
	return d.filter(chunk, true)
}

// Stats are a detector's counters (aptnc_stats).
type Stats struct {
	Records                  uint64 // records seen (msgpack: excluding group markers)
	Annotated                uint64 // records returned with alert fields
	Stage1Matches            uint64
	Stage2Matches            uint64
	SequencesCompleted       uint64 // alerts
	RejectedByMaxspan        uint64
	ExpiredByMaxspan         uint64
	EvictedByCap             uint64
	Replaced                 uint64
	OutOfOrder               uint64
	Late                     uint64
	MissingKey               uint64
	KeyCombinationsTruncated uint64
	InvalidIP                uint64
	TooLarge                 uint64
	InvalidJSON              uint64
	InvalidMsgpack           uint64
	NotAnObject              uint64
	TooDeep                  uint64
	BadTimestamp             uint64
	AnnotateFailed           uint64
	Pending                  uint64 // partial sequences held now
	Excluded                 uint64 // events excluded by an exception item
	EvictedByHostCap         uint64
	EvictedByBytes           uint64
	FutureTimestamp          uint64
	Held                     uint64 // events held back for max_lateness now
	HeldForced               uint64
	StandaloneAlerts         uint64 // alerts given as records of their own (a rule pack, max_lateness)
	AlertsDropped            uint64
}

// Stats reads the detector's counters.
func (d *Detector) Stats() (Stats, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.det == nil {
		return Stats{}, ErrClosed
	}
	var s C.aptnc_stats
	s.size = C.uint32_t(unsafe.Sizeof(s))
	if st := Status(C.aptnc_get_stats(d.det, &s)); st != StatusOK {
		return Stats{}, &Error{Status: st, Message: st.String()}
	}
	return Stats{
		Records:                  uint64(s.records),
		Annotated:                uint64(s.annotated),
		Stage1Matches:            uint64(s.stage1_matches),
		Stage2Matches:            uint64(s.stage2_matches),
		SequencesCompleted:       uint64(s.sequences_completed),
		RejectedByMaxspan:        uint64(s.rejected_by_maxspan),
		ExpiredByMaxspan:         uint64(s.expired_by_maxspan),
		EvictedByCap:             uint64(s.evicted_by_cap),
		Replaced:                 uint64(s.replaced),
		OutOfOrder:               uint64(s.out_of_order),
		Late:                     uint64(s.late),
		MissingKey:               uint64(s.missing_key),
		KeyCombinationsTruncated: uint64(s.key_combinations_truncated),
		InvalidIP:                uint64(s.invalid_ip),
		TooLarge:                 uint64(s.too_large),
		InvalidJSON:              uint64(s.invalid_json),
		InvalidMsgpack:           uint64(s.invalid_msgpack),
		NotAnObject:              uint64(s.not_an_object),
		TooDeep:                  uint64(s.too_deep),
		BadTimestamp:             uint64(s.bad_timestamp),
		AnnotateFailed:           uint64(s.annotate_failed),
		Pending:                  uint64(s.pending),
		Excluded:                 uint64(s.excluded),
		EvictedByHostCap:         uint64(s.evicted_by_host_cap),
		EvictedByBytes:           uint64(s.evicted_by_bytes),
		FutureTimestamp:          uint64(s.future_timestamp),
		Held:                     uint64(s.held),
		HeldForced:               uint64(s.held_forced),
		StandaloneAlerts:         uint64(s.standalone_alerts),
		AlertsDropped:            uint64(s.alerts_dropped),
	}, nil
}

// RuleCounters is one rule's part of a RulesReport.
type RuleCounters struct {
	RuleID string
	Name   string
	Engine string // "fast" or "generic"
	Alerts uint64 // alerts the rule gave
	// Every counter of the rule by its aptnc_stats field name ("records":
	// for a rule of a pack, the records it was tested on; "annotated",
	// "sequences_completed", "pending", ...).
	Counters map[string]uint64
}

// SkippedRule is a rule of a pack that did not load (skip_broken_rules).
type SkippedRule struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// RulesReport is each rule's counters, in the pack's order (one rule for a
// detector of one rule), and the rules that did not load.
type RulesReport struct {
	Rules   []RuleCounters
	Skipped []SkippedRule
}

// RulesReportJSON is the report as the library writes it
// (aptnc_rules_report): {"rules":[{"rule_id","name","engine","alerts",
// ...counters}],"skipped":[{"name","reason"}]}.
func (d *Detector) RulesReportJSON() ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.det == nil {
		return nil, ErrClosed
	}
	var out *C.uint8_t
	var outLen C.size_t
	if st := Status(C.aptnc_rules_report(d.det, &out, &outLen)); st != StatusOK {
		return nil, &Error{Status: st, Message: st.String()}
	}
	return copyOut(out, outLen), nil
}

// RulesReport reads each rule's counters and the rules that did not load.
func (d *Detector) RulesReport() (RulesReport, error) {
	text, err := d.RulesReportJSON()
	if err != nil {
		return RulesReport{}, err
	}
	var raw struct {
		Rules   []map[string]json.RawMessage `json:"rules"`
		Skipped []SkippedRule                `json:"skipped"`
	}
	if err := json.Unmarshal(text, &raw); err != nil {
		return RulesReport{}, fmt.Errorf("apt_netcon: rules report: %w", err)
	}
	r := RulesReport{Rules: make([]RuleCounters, 0, len(raw.Rules)), Skipped: raw.Skipped}
	if r.Skipped == nil {
		r.Skipped = []SkippedRule{}
	}
	for _, m := range raw.Rules {
		rc := RuleCounters{Counters: make(map[string]uint64, len(m))}
		for k, v := range m {
			var err error
			switch k {
			case "rule_id":
				err = json.Unmarshal(v, &rc.RuleID)
			case "name":
				err = json.Unmarshal(v, &rc.Name)
			case "engine":
				err = json.Unmarshal(v, &rc.Engine)
			case "alerts":
				err = json.Unmarshal(v, &rc.Alerts)
			default:
				var n uint64
				if json.Unmarshal(v, &n) == nil { // members that are not counters are left out
					rc.Counters[k] = n
				}
			}
			if err != nil {
				return RulesReport{}, fmt.Errorf("apt_netcon: rules report: %s: %w", k, err)
			}
		}
		r.Rules = append(r.Rules, rc)
	}
	return r, nil
}

// FlushReport is what Flush or Finish did.
type FlushReport struct {
	Expired uint64 // partial sequences dropped because they can no longer complete
	Pending uint64 // partial sequences still held
	Held    uint64 // events still held back for max_lateness
	// Standalone alert records (only with max_lateness above 0), NDJSON;
	// forward them after the records already forwarded. Handed over once.
	Alerts     []byte
	AlertCount uint64
}

// Flush drops the partial sequences that can no longer complete at the
// current event-time watermark (never the wall clock) and hands over the
// standalone alerts waiting, e.g. from a periodic timer. Forward any Alerts
// it returns.
func (d *Detector) Flush() (FlushReport, error) {
	return d.flush(false)
}

// Finish ends the stream: every event held back for max_lateness is
// released, and every alert still to come is in Alerts. Call it before
// Close when the input ends; nothing is lost.
func (d *Detector) Finish() (FlushReport, error) {
	return d.flush(true)
}

func (d *Detector) flush(finish bool) (FlushReport, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.det == nil {
		return FlushReport{}, ErrClosed
	}
	var r C.aptnc_flush_report
	r.size = C.uint32_t(unsafe.Sizeof(r))
	var st Status
	if finish {
		st = Status(C.aptnc_finish(d.det, &r))
	} else {
		st = Status(C.aptnc_flush(d.det, &r))
	}
	if st != StatusOK {
		return FlushReport{}, &Error{Status: st, Message: st.String()}
	}
	return FlushReport{
		Expired:    uint64(r.expired),
		Pending:    uint64(r.pending),
		Held:       uint64(r.held),
		Alerts:     copyOut(r.alerts, r.alerts_len),
		AlertCount: uint64(r.alert_count),
	}, nil
}

// String summarizes the counters on one line.
func (s Stats) String() string {
	return fmt.Sprintf("records=%d annotated=%d stage1_matches=%d stage2_matches=%d sequences_completed=%d pending=%d",
		s.Records, s.Annotated, s.Stage1Matches, s.Stage2Matches, s.SequencesCompleted, s.Pending)
}
