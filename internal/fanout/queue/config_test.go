package queue

import (
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

func TestConfigYAMLDefaultsAndValidate(t *testing.T) {
	var c Config
	err := yaml.UnmarshalStrict([]byte(`
memory: {records: 5000}
workers: 4
batch: {max_records: 1000, max_bytes: 2097152, max_wait: 500ms}
retry: {initial_backoff: 200ms, max_backoff: 10s, max_elapsed: 0s}
rate_limit: {records_per_second: 20000, burst: 40000}
disk: {dir: /var/lib/meshtrail/queue/loki, segment_bytes: 67108864, max_bytes: 2147483648, fsync: interval, fsync_interval: 1s}
overflow: {policy: drop_oldest}
dead_letter: /var/lib/meshtrail/dead/loki.ndjson
`), &c)
	if err != nil {
		t.Fatal(err)
	}
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if *c.Memory.Records != 5000 || c.Batch.MaxWait.D() != 500*time.Millisecond || c.Overflow.BlockTimeout.D() != time.Second {
		t.Fatalf("parsed %+v", c)
	}
	if err := Defaults().Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}

	bad := Defaults()
	bad.Batch.MaxRecords = 0
	bad.Disk = DiskConfig{Dir: "/x", SegmentBytes: 10, MaxBytes: 5, Fsync: "sometimes"}
	bad.Overflow.Policy = "panic"
	bad.Retry.MaxBackoff = 1
	err = bad.Validate()
	for _, want := range []string{
		"queue.batch.max_records: must be > 0", "queue.disk.max_bytes", "queue.disk.fsync", "queue.overflow.policy", "queue.retry.max_backoff",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
	if err := yaml.UnmarshalStrict([]byte(`batch: {max_wait: soon}`), &c); err == nil {
		t.Error("bad duration accepted")
	}
}
