package aptnetcon

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

const samplePath = "../../examples/data/sample.ndjson"

// cliPath is the apt-netcon CLI whose output is the reference
// (APT_NETCON_CLI overrides the debug build's).
func cliPath(t *testing.T) string {
	t.Helper()
	p := os.Getenv("APT_NETCON_CLI")
	if p == "" {
		p = "../../target/debug/apt-netcon"
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("the CLI %s is needed for the expected alerts (run cargo build first, or set APT_NETCON_CLI): %v", p, err)
	}
	return p
}

// splitLines splits NDJSON into records (without terminators), keeping blank
// lines out, and the terminators in ends (for byte-exact comparison).
func splitLines(data []byte) (records [][]byte, ends [][]byte) {
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		var line, end []byte
		if i < 0 {
			line, end, data = data, nil, nil
		} else {
			line, end, data = data[:i], data[i:i+1], data[i+1:]
		}
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line, end = line[:n-1], append([]byte{'\r'}, end...)
		}
		records = append(records, line)
		ends = append(ends, end)
	}
	return records, ends
}

// field reads a dotted path from a decoded record, nested or dotted.
func field(m map[string]interface{}, path string) interface{} {
	if v, ok := m[path]; ok {
		return v
	}
	parts := strings.SplitN(path, ".", 2)
	sub, ok := m[parts[0]].(map[string]interface{})
	if !ok || len(parts) == 1 {
		if len(parts) == 1 {
			return m[parts[0]]
		}
		return nil
	}
	return field(sub, parts[1])
}

type alert struct{ EventID, UUID string }

func alertOf(t *testing.T, rec []byte) (alert, bool) {
	t.Helper()
	var m map[string]interface{}
	if err := json.Unmarshal(rec, &m); err != nil {
		return alert{}, false
	}
	uuid, ok := field(m, "kibana.alert.uuid").(string)
	if !ok {
		return alert{}, false
	}
	id, _ := field(m, "event.id").(string)
	return alert{id, uuid}, true
}

// cliOutput runs `apt-netcon --quiet SAMPLE` and returns its output.
func cliOutput(t *testing.T) []byte {
	t.Helper()
	out, err := exec.Command(cliPath(t), "--quiet", samplePath).Output()
	if err != nil {
		t.Fatalf("running the CLI: %v", err)
	}
	return out
}

func cliAlerts(t *testing.T, out []byte) []alert {
	var alerts []alert
	recs, _ := splitLines(out)
	for _, r := range recs {
		if a, ok := alertOf(t, r); ok {
			alerts = append(alerts, a)
		}
	}
	if len(alerts) == 0 {
		t.Fatal("the CLI gives no alert on the sample: nothing to compare")
	}
	return alerts
}

func newDetector(t *testing.T, config string) *Detector {
	t.Helper()
	d, err := New(config)
	if err != nil {
		t.Fatalf("New(%q): %v", config, err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestVersion(t *testing.T) {
	if ABIVersion() != HeaderABIVersion {
		t.Errorf("library ABI %d, header ABI %d", ABIVersion(), HeaderABIVersion)
	}
	if v := Version(); v == "" || strings.Count(v, ".") != 2 {
		t.Errorf("Version() = %q", v)
	}
	if s := StatusInvalidJSON.String(); !strings.Contains(strings.ToLower(s), "json") {
		t.Errorf("StatusInvalidJSON.String() = %q", s)
	}
}

// The sample through Filter gives the CLI's output byte for byte, so the same
// alerts (event.id and kibana.alert.uuid).
func TestSampleMatchesCLI(t *testing.T) {
	want := cliOutput(t)
	wantAlerts := cliAlerts(t, want)
	data, err := os.ReadFile(samplePath)
	if err != nil {
		t.Fatal(err)
	}
	d := newDetector(t, "")
	records, ends := splitLines(data)
	var got bytes.Buffer
	var gotAlerts []alert
	for i, rec := range records {
		if len(bytes.TrimSpace(rec)) == 0 {
			got.Write(rec)
			got.Write(ends[i])
			continue
		}
		out, annotated, err := d.Filter(rec)
		if err != nil {
			t.Errorf("record %d: %v", i+1, err)
		}
		if annotated {
			a, ok := alertOf(t, out)
			if !ok {
				t.Errorf("record %d: annotated without kibana.alert.uuid", i+1)
			}
			gotAlerts = append(gotAlerts, a)
		} else if &out[0] != &rec[0] || len(out) != len(rec) {
			t.Errorf("record %d: an unchanged record must come back as the input slice", i+1)
		}
		got.Write(out)
		got.Write(ends[i])
	}
	t.Logf("CLI alerts %v, Go alerts %v", wantAlerts, gotAlerts)
	if fmt.Sprint(gotAlerts) != fmt.Sprint(wantAlerts) {
		t.Errorf("alerts: got %v, the CLI gives %v", gotAlerts, wantAlerts)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("output differs from the CLI's (%d vs %d bytes)", got.Len(), len(want))
	}
	st, err := d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Records != uint64(len(records)) || st.Annotated != uint64(len(wantAlerts)) ||
		st.SequencesCompleted != uint64(len(wantAlerts)) {
		t.Errorf("stats: %v (records %d, alerts %d expected)", st, len(records), len(wantAlerts))
	}
	rep, err := d.Flush()
	if err != nil || len(rep.Alerts) != 0 {
		t.Errorf("Flush: %+v, %v", rep, err)
	}
}

// With max_lateness, the sample reversed (every event out of order) comes
// back unchanged, and Finish hands over the CLI's alerts as standalone
// records.
func TestFinishReleasesHeldAlerts(t *testing.T) {
	wantAlerts := cliAlerts(t, cliOutput(t))
	data, err := os.ReadFile(samplePath)
	if err != nil {
		t.Fatal(err)
	}
	d := newDetector(t, `{"max_lateness":"1d"}`)
	records, _ := splitLines(data)
	for i := len(records) - 1; i >= 0; i-- {
		if len(bytes.TrimSpace(records[i])) == 0 {
			continue
		}
		if _, annotated, _ := d.Filter(records[i]); annotated {
			t.Errorf("record %d annotated inline with max_lateness", i+1)
		}
	}
	rep, err := d.Flush()
	if err != nil || rep.AlertCount != 0 || rep.Held == 0 {
		t.Fatalf("Flush before the end: %+v, %v", rep, err)
	}
	rep, err = d.Finish()
	if err != nil || rep.Held != 0 || rep.AlertCount != uint64(len(wantAlerts)) {
		t.Fatalf("Finish: %+v, %v", rep, err)
	}
	var got []string
	for _, line := range bytes.Split(bytes.TrimSuffix(rep.Alerts, []byte("\n")), []byte("\n")) {
		a, ok := alertOf(t, line)
		if !ok {
			t.Fatalf("a standalone alert without kibana.alert.uuid: %s", line)
		}
		got = append(got, fmt.Sprint(a))
	}
	var want []string
	for _, a := range wantAlerts {
		want = append(want, fmt.Sprint(a))
	}
	sort.Strings(got)
	sort.Strings(want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("standalone alerts %v, the CLI gives %v", got, want)
	}
}

// What Filter returns is Go memory: the next call does not change it.
func TestOutputIsCopied(t *testing.T) {
	data, err := os.ReadFile(samplePath)
	if err != nil {
		t.Fatal(err)
	}
	d := newDetector(t, "")
	records, _ := splitLines(data)
	var kept [][]byte
	var copies [][]byte
	for _, rec := range records {
		out, annotated, _ := d.Filter(rec)
		if annotated {
			kept = append(kept, out)
			copies = append(copies, append([]byte(nil), out...))
		}
	}
	// More calls, which reuse the library's output buffer.
	for _, rec := range records {
		d.Filter(rec)
	}
	if len(kept) == 0 {
		t.Fatal("no alert")
	}
	for i := range kept {
		if !bytes.Equal(kept[i], copies[i]) {
			t.Errorf("alert %d changed after later calls", i)
		}
	}
}

func TestBadConfigNamesTheKey(t *testing.T) {
	for _, tc := range []struct {
		config string
		key    string
	}{
		{`{"max_pending_sequence": 5}`, "max_pending_sequence"},
		{`{"max_pending_sequences": "many"}`, "max_pending_sequences"},
		{`{"kibana_fields": 1}`, "kibana_fields"},
		{`{"rule": "no_such_rule"}`, ""},
	} {
		d, err := New(tc.config)
		if err == nil {
			d.Close()
			t.Errorf("New(%s): no error", tc.config)
			continue
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("New(%s): %T is not *Error", tc.config, err)
			continue
		}
		if e.Message == "" || !strings.Contains(err.Error(), e.Message) {
			t.Errorf("New(%s): message %q / %q", tc.config, e.Message, err.Error())
		}
		if tc.key != "" && (e.Key != tc.key || e.Status != StatusConfigError || !strings.Contains(e.Message, tc.key)) {
			t.Errorf("New(%s): status %v key %q message %q, want key %q", tc.config, e.Status, e.Key, e.Message, tc.key)
		}
		if tc.key == "" && e.Status != StatusConfigError && e.Status != StatusRuleError {
			t.Errorf("New(%s): status %v", tc.config, e.Status)
		}
	}
	if _, err := New(`{not json`); err == nil {
		t.Error("New with invalid JSON: no error")
	} else if e := (*Error)(nil); !errors.As(err, &e) || e.Status != StatusConfigError {
		t.Errorf("New with invalid JSON: %v", err)
	}
}

func TestRuleErrorHasLineAndColumn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.eql")
	rule := "process where process.name == \"sh\" and\n  cidrmatch(destination.ip, \"10.0.0.0/33\")\n"
	if err := os.WriteFile(path, []byte(rule), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(map[string]string{"rule_file": path})
	_, err := New(string(cfg))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("New(%s): %v", cfg, err)
	}
	if e.Status != StatusRuleError || e.Line != 2 || e.Column != 29 {
		t.Errorf("rule error: status %v line %d column %d, want RULE_ERROR 2:29\n%s", e.Status, e.Line, e.Column, e.Message)
	}
}

func TestConfigIsUsed(t *testing.T) {
	data, err := os.ReadFile(samplePath)
	if err != nil {
		t.Fatal(err)
	}
	d := newDetector(t, `{"kibana_fields": false, "annotation_prefix": "sec.apt"}`)
	records, _ := splitLines(data)
	n := 0
	for _, rec := range records {
		out, annotated, _ := d.Filter(rec)
		if !annotated {
			continue
		}
		n++
		var m map[string]interface{}
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatal(err)
		}
		id, _ := field(m, "sec.apt.apt_netcon.alert_id").(string)
		if field(m, "kibana") != nil || field(m, "rule") != nil || id == "" || field(m, "sec.apt.rule.name") == nil {
			t.Errorf("config not applied (want the alert under sec.apt, no kibana.*): %s", out)
		}
	}
	if n == 0 {
		t.Error("no alert with the config")
	}
}

func TestUnreadableRecordsPassThrough(t *testing.T) {
	d := newDetector(t, "")
	for _, tc := range []struct {
		rec  string
		want Status
	}{
		{`{"a":`, StatusInvalidJSON},
		{``, StatusInvalidJSON},
		{"{\"a\":\"\xff\"}", StatusInvalidJSON},
		{`[1,2]`, StatusNotAnObject},
		{`"text"`, StatusNotAnObject},
	} {
		in := []byte(tc.rec)
		out, annotated, err := d.Filter(in)
		var e *Error
		if annotated || !bytes.Equal(out, in) || !errors.As(err, &e) || e.Status != tc.want {
			t.Errorf("Filter(%q) = %q, %v, %v; want the record back and %v", tc.rec, out, annotated, err, tc.want)
		}
	}
	st, _ := d.Stats()
	if st.InvalidJSON != 3 || st.NotAnObject != 2 {
		t.Errorf("stats: invalid_json %d not_an_object %d", st.InvalidJSON, st.NotAnObject)
	}
}

func TestClose(t *testing.T) {
	d, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	in := []byte(`{}`)
	if out, annotated, err := d.Filter(in); err != ErrClosed || annotated || !bytes.Equal(out, in) {
		t.Errorf("Filter after Close: %q %v %v", out, annotated, err)
	}
	if _, err := d.Stats(); err != ErrClosed {
		t.Errorf("Stats after Close: %v", err)
	}
}

// Many goroutines on one detector: serialized by its mutex, every record
// counted once, no crash (run with -race too).
func TestConcurrentCalls(t *testing.T) {
	data, err := os.ReadFile(samplePath)
	if err != nil {
		t.Fatal(err)
	}
	records, _ := splitLines(data)
	d := newDetector(t, "")
	var wg sync.WaitGroup
	const workers = 8
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, rec := range records {
				d.Filter(rec)
				d.Stats()
			}
		}()
	}
	wg.Wait()
	st, _ := d.Stats()
	if st.Records != uint64(workers*len(records)) {
		t.Errorf("records %d, want %d", st.Records, workers*len(records))
	}
}

// ---------------------------------------------------------------------------
// FilterChunk: the sample as Fluent Bit MessagePack chunks.

// mpEncode writes a JSON value (decoded with UseNumber) as MessagePack.
func mpEncode(buf *bytes.Buffer, v interface{}) {
	switch x := v.(type) {
	case nil:
		buf.WriteByte(0xc0)
	case bool:
		if x {
			buf.WriteByte(0xc3)
		} else {
			buf.WriteByte(0xc2)
		}
	case json.Number:
		if i, err := x.Int64(); err == nil {
			buf.WriteByte(0xd3)
			binary.Write(buf, binary.BigEndian, i)
		} else {
			f, _ := x.Float64()
			buf.WriteByte(0xcb)
			binary.Write(buf, binary.BigEndian, math.Float64bits(f))
		}
	case string:
		buf.WriteByte(0xdb)
		binary.Write(buf, binary.BigEndian, uint32(len(x)))
		buf.WriteString(x)
	case []interface{}:
		buf.WriteByte(0xdd)
		binary.Write(buf, binary.BigEndian, uint32(len(x)))
		for _, e := range x {
			mpEncode(buf, e)
		}
	case map[string]interface{}:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		buf.WriteByte(0xdf)
		binary.Write(buf, binary.BigEndian, uint32(len(x)))
		for _, k := range keys {
			mpEncode(buf, k)
			mpEncode(buf, x[k])
		}
	default:
		panic(fmt.Sprintf("mpEncode: %T", v))
	}
}

// fbRecord appends one Fluent Bit v2 record: [[EventTime, {}], body].
func fbRecord(buf *bytes.Buffer, sec, nsec uint32, jsonRecord []byte) error {
	dec := json.NewDecoder(bytes.NewReader(jsonRecord))
	dec.UseNumber()
	var body map[string]interface{}
	if err := dec.Decode(&body); err != nil {
		return err
	}
	buf.Write([]byte{0x92, 0x92, 0xd7, 0x00}) // [[ ext8 type 0
	binary.Write(buf, binary.BigEndian, sec)
	binary.Write(buf, binary.BigEndian, nsec)
	buf.WriteByte(0x80) // {} metadata
	mpEncode(buf, body)
	return nil
}

func TestFilterChunk(t *testing.T) {
	wantAlerts := cliAlerts(t, cliOutput(t))
	data, err := os.ReadFile(samplePath)
	if err != nil {
		t.Fatal(err)
	}
	records, _ := splitLines(data)

	// One record per chunk: the annotated chunks are the CLI's alerts.
	d := newDetector(t, "")
	var got []alert
	for i, rec := range records {
		var chunk bytes.Buffer
		if err := fbRecord(&chunk, 1773480600+uint32(i), 0, rec); err != nil {
			t.Fatal(err)
		}
		in := chunk.Bytes()
		out, annotated, err := d.FilterChunk(in)
		if err != nil {
			t.Fatalf("record %d: %v", i+1, err)
		}
		if !annotated {
			if &out[0] != &in[0] {
				t.Errorf("record %d: unchanged chunk must come back as the input", i+1)
			}
			continue
		}
		var m map[string]interface{}
		json.Unmarshal(rec, &m)
		id, _ := field(m, "event.id").(string)
		uuid := ""
		for _, w := range wantAlerts {
			if w.EventID == id && bytes.Contains(out, []byte(w.UUID)) {
				uuid = w.UUID
			}
		}
		got = append(got, alert{id, uuid})
	}
	if fmt.Sprint(got) != fmt.Sprint(wantAlerts) {
		t.Errorf("msgpack alerts %v, the CLI's %v", got, wantAlerts)
	}

	// The whole sample in one chunk.
	d2 := newDetector(t, "")
	var chunk bytes.Buffer
	for i, rec := range records {
		if err := fbRecord(&chunk, 1773480600+uint32(i), 0, rec); err != nil {
			t.Fatal(err)
		}
	}
	out, annotated, err := d2.FilterChunk(chunk.Bytes())
	if err != nil || !annotated {
		t.Fatalf("whole-sample chunk: annotated %v, %v", annotated, err)
	}
	for _, w := range wantAlerts {
		if !bytes.Contains(out, []byte(w.UUID)) {
			t.Errorf("whole-sample chunk lacks alert %s", w.UUID)
		}
	}
	if st, _ := d2.Stats(); st.Records != uint64(len(records)) || st.Annotated != uint64(len(wantAlerts)) {
		t.Errorf("whole-sample chunk stats: %v", st)
	}

	// Not MessagePack.
	bad := []byte{0xc1, 0x00}
	out, annotated, err = d2.FilterChunk(bad)
	var e *Error
	if annotated || !bytes.Equal(out, bad) || !errors.As(err, &e) || e.Status != StatusInvalidMsgpack {
		t.Errorf("FilterChunk(garbage) = %x %v %v", out, annotated, err)
	}
}

// ---------------------------------------------------------------------------
// Rule packs: one record completing several rules.

// writePack writes, in file-name order, a_port, b_addr, the three-stage
// c_seq (all three completed by packRecords[2]) and d_quiet (never
// matches), plus, with broken, e_broken and f_broken (which do not load).
func writePack(t *testing.T, broken bool) string {
	dir := t.TempDir()
	files := map[string]string{
		"a_port.eql":  "network where destination.port == 4444\n",
		"b_addr.eql":  "network where destination.address == \"203.0.113.9\"\n",
		"c_seq.eql":   "sequence by host.id\n  [process where process.name == \"stage1\"]\n  [file where file.name == \"stage2\"]\n  [network where destination.port == 4444]\n",
		"d_quiet.eql": "process where process.name == \"never-seen\"\n",
	}
	if broken {
		files["e_broken.eql"] = "network where destination.port ==\n"
		files["f_broken.eql"] = "this is not eql\n"
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var packRecords = [][]byte{
	[]byte(`{"@timestamp":"2026-03-14T09:30:00.000Z","event":{"category":["process"],"id":"e1"},"host":{"id":"h1"},"process":{"name":"stage1","entity_id":"p1"}}`),
	[]byte(`{"@timestamp":"2026-03-14T09:30:01.000Z","event":{"category":["file"],"id":"e2"},"host":{"id":"h1"},"file":{"name":"stage2"}}`),
	[]byte(`{"@timestamp":"2026-03-14T09:30:02.000Z","event":{"category":["network"],"id":"e3"},"host":{"id":"h1"},"destination":{"port":4444,"address":"203.0.113.9","ip":"203.0.113.9"}}`),
}

func packConfig(dir string, skip bool) string {
	cfg, _ := json.Marshal(map[string]interface{}{"rules_dir": dir, "skip_broken_rules": skip})
	return string(cfg)
}

// checkPackAlerts: each alert is the completing record with event.kind
// "signal" and its rule's name, in the order given.
func checkPackAlerts(t *testing.T, alerts [][]byte, names []string) {
	t.Helper()
	if len(alerts) != len(names) {
		t.Fatalf("%d alerts, want %d: %s", len(alerts), len(names), bytes.Join(alerts, []byte("\n")))
	}
	for i, a := range alerts {
		var m map[string]interface{}
		if err := json.Unmarshal(a, &m); err != nil {
			t.Fatalf("alert %d: %v: %s", i, err, a)
		}
		if field(m, "event.kind") != "signal" || field(m, "rule.name") != names[i] || field(m, "event.id") != "e3" {
			t.Errorf("alert %d: kind %v, rule %v, event %v; want signal, %s, e3", i,
				field(m, "event.kind"), field(m, "rule.name"), field(m, "event.id"), names[i])
		}
	}
}

func TestPackGivesOneAlertPerRuleAfterTheRecord(t *testing.T) {
	d := newDetector(t, packConfig(writePack(t, false), false))
	var alerts [][]byte
	seen := uint64(0)
	for i, rec := range packRecords {
		out, annotated, err := d.Filter(rec)
		if err != nil || annotated || !bytes.Equal(out, rec) {
			t.Fatalf("record %d: annotated %v, err %v: a pack forwards every record as it came", i+1, annotated, err)
		}
		st, _ := d.Stats()
		if st.StandaloneAlerts == seen {
			continue
		}
		if i != 2 {
			t.Fatalf("record %d gave alerts", i+1)
		}
		seen = st.StandaloneAlerts
		r, err := d.Flush()
		if err != nil {
			t.Fatal(err)
		}
		if r.AlertCount != 3 {
			t.Fatalf("AlertCount %d, want 3", r.AlertCount)
		}
		for _, line := range bytes.Split(bytes.TrimSuffix(r.Alerts, []byte("\n")), []byte("\n")) {
			alerts = append(alerts, line)
		}
	}
	checkPackAlerts(t, alerts, []string{"a_port", "b_addr", "c_seq"})
	if st, _ := d.Stats(); st.Records != 3 || st.Annotated != 0 || st.StandaloneAlerts != 3 {
		t.Errorf("stats %+v", st)
	}

	rep, err := d.RulesReport()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rep.Rules {
		got = append(got, fmt.Sprintf("%s:%d", r.Name, r.Alerts))
		if r.RuleID == "" || (r.Engine != "fast" && r.Engine != "generic") {
			t.Errorf("rule %+v", r)
		}
	}
	if want := "[a_port:1 b_addr:1 c_seq:1 d_quiet:0]"; fmt.Sprint(got) != want {
		t.Errorf("rules %v, want %s", got, want)
	}
	if rep.Rules[2].Counters["sequences_completed"] != 1 || rep.Rules[2].Counters["records"] < 3 {
		t.Errorf("c_seq counters %v", rep.Rules[2].Counters)
	}
	if len(rep.Skipped) != 0 {
		t.Errorf("skipped %v", rep.Skipped)
	}
	text, err := d.RulesReportJSON()
	if err != nil || !bytes.HasPrefix(text, []byte(`{"rules":[{"rule_id":`)) {
		t.Errorf("RulesReportJSON: %s, %v", text, err)
	}

	// The same through FilterChunk: the chunk's records, then the alerts.
	d2 := newDetector(t, packConfig(writePack(t, false), false))
	var chunk bytes.Buffer
	for i, rec := range packRecords {
		if err := fbRecord(&chunk, 1773480600+uint32(i), 0, rec); err != nil {
			t.Fatal(err)
		}
	}
	out, annotated, err := d2.FilterChunk(chunk.Bytes())
	if err != nil || !annotated || !bytes.HasPrefix(out, chunk.Bytes()) {
		t.Fatalf("FilterChunk: annotated %v, %v; the chunk's records must come first, unchanged", annotated, err)
	}
	tail := out[chunk.Len():]
	pos := []int{bytes.Index(tail, []byte("a_port")), bytes.Index(tail, []byte("b_addr")), bytes.Index(tail, []byte("c_seq"))}
	if pos[0] < 0 || pos[0] > pos[1] || pos[1] > pos[2] || bytes.Count(tail, []byte("signal")) != 3 {
		t.Errorf("appended alerts out of rule order or missing: %v", pos)
	}
	d.Close()
	if _, err := d.RulesReport(); err != ErrClosed {
		t.Errorf("RulesReport after Close: %v", err)
	}
}

func TestPackWithBrokenRules(t *testing.T) {
	dir := writePack(t, true)
	_, err := New(packConfig(dir, false))
	var e *Error
	if !errors.As(err, &e) || e.Status != StatusConfigError || e.Key != "rules_dir" {
		t.Fatalf("New with broken rules: %v", err)
	}
	for _, want := range []string{"2 of 6 rules do not load", "e_broken.eql: ", "f_broken.eql: "} {
		if !strings.Contains(e.Message, want) {
			t.Errorf("error %q lacks %q", e.Message, want)
		}
	}

	d := newDetector(t, packConfig(dir, true))
	rep, err := d.RulesReport()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rules) != 4 || len(rep.Skipped) != 2 ||
		!strings.HasSuffix(rep.Skipped[0].Name, "e_broken.eql") || rep.Skipped[0].Reason == "" ||
		!strings.HasSuffix(rep.Skipped[1].Name, "f_broken.eql") || rep.Skipped[1].Reason == "" {
		t.Errorf("report %+v", rep)
	}
	for _, rec := range packRecords {
		d.Filter(rec)
	}
	r, _ := d.Flush()
	checkPackAlerts(t, bytes.Split(bytes.TrimSuffix(r.Alerts, []byte("\n")), []byte("\n")), []string{"a_port", "b_addr", "c_seq"})

	// The default detector: its one rule, nothing skipped.
	one := newDetector(t, "")
	rep, err = one.RulesReport()
	if err != nil || len(rep.Rules) != 1 || rep.Rules[0].RuleID != "eaef8a35-12e0-4ac0-bc14-81c72b6bd27c" || len(rep.Skipped) != 0 {
		t.Errorf("default report %+v, %v", rep, err)
	}
}
