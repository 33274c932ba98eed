package queue

import (
	"errors"
	"fmt"
	"time"

	"github.com/meshtrail/meshtrail/internal/config"
)

// Duration is meshtrail's one configuration duration: text with a unit
// ("250ms", "10s"); a bare number is refused with the unit to write.
type Duration = config.Duration

// Overflow policies: what happens to new records when memory and disk
// (if enabled) are both full.
const (
	DropNewest = "drop_newest" // refuse the new records (counted)
	DropOldest = "drop_oldest" // discard the oldest queued records (counted)
	Block      = "block"       // make the source wait up to block_timeout, then drop newest
)

// Fsync policies for the disk spill.
const (
	FsyncAlways   = "always"
	FsyncInterval = "interval"
	FsyncNever    = "never"
)

// Config is one sink's queue. The YAML shape (under a sink's `queue:` key)
// is documented in fanout/README.md; zero fields take Defaults().
type Config struct {
	Memory     MemoryConfig   `json:"memory"`
	Workers    int            `json:"workers,omitempty"`
	Batch      BatchConfig    `json:"batch"`
	Retry      RetryConfig    `json:"retry"`
	RateLimit  RateConfig     `json:"rate_limit"`
	Disk       DiskConfig     `json:"disk"`
	Overflow   OverflowConfig `json:"overflow"`
	DeadLetter string         `json:"dead_letter,omitempty"` // NDJSON file for poison records; "" = drop (counted)
	// Timeout bounds one Export call.
	Timeout Duration `json:"timeout,omitempty"`
	// ProgressEvery logs replay progress every this many records (and at
	// most every ProgressInterval).
	ProgressEvery    int      `json:"progress_every,omitempty"`
	ProgressInterval Duration `json:"progress_interval,omitempty"`
}

// MemoryConfig sizes the in-memory queue.
type MemoryConfig struct {
	// Records is how many records wait in memory before the queue spills
	// to disk. 0 with disk enabled means write-ahead: every record goes to
	// disk first, so a crash loses only batches in flight.
	Records *int `json:"records,omitempty"`
}

// BatchConfig says when a batch is sent: whichever limit is hit first.
type BatchConfig struct {
	MaxRecords int      `json:"max_records,omitempty"`
	MaxBytes   int      `json:"max_bytes,omitempty"` // sum of len(record.AppendJSON)
	MaxWait    Duration `json:"max_wait,omitempty"`
}

// RetryConfig is exponential backoff with full jitter.
type RetryConfig struct {
	InitialBackoff Duration `json:"initial_backoff,omitempty"`
	MaxBackoff     Duration `json:"max_backoff,omitempty"`
	// MaxElapsed gives up on a batch after this long; 0 means never (the
	// batch is retried until the backend takes it). A batch given up on
	// goes to the dead letter file.
	MaxElapsed Duration `json:"max_elapsed,omitempty"`
}

// RateConfig is a token bucket on records sent; RecordsPerSecond 0 = none.
type RateConfig struct {
	RecordsPerSecond float64 `json:"records_per_second,omitempty"`
	Burst            int     `json:"burst,omitempty"`
}

// DiskConfig is the spill area; Dir "" disables it.
type DiskConfig struct {
	Dir           string   `json:"dir,omitempty"`
	SegmentBytes  int64    `json:"segment_bytes,omitempty"`
	MaxBytes      int64    `json:"max_bytes,omitempty"`
	Fsync         string   `json:"fsync,omitempty"` // always | interval | never
	FsyncInterval Duration `json:"fsync_interval,omitempty"`
}

// OverflowConfig applies when memory and disk are both full.
type OverflowConfig struct {
	Policy       string   `json:"policy,omitempty"` // drop_newest | drop_oldest | block
	BlockTimeout Duration `json:"block_timeout,omitempty"`
}

// Defaults returns a Config with every default filled in.
func Defaults() Config { return Config{}.WithDefaults() }

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Memory.Records == nil {
		n := 10000
		c.Memory.Records = &n
	}
	setInt(&c.Workers, 2)
	setInt(&c.Batch.MaxRecords, 500)
	setInt(&c.Batch.MaxBytes, 1<<20)
	setDur(&c.Batch.MaxWait, 200*time.Millisecond)
	setDur(&c.Retry.InitialBackoff, 100*time.Millisecond)
	setDur(&c.Retry.MaxBackoff, 10*time.Second)
	if c.RateLimit.RecordsPerSecond > 0 && c.RateLimit.Burst == 0 {
		c.RateLimit.Burst = max(1, int(c.RateLimit.RecordsPerSecond), c.Batch.MaxRecords)
	}
	if c.Disk.SegmentBytes == 0 {
		c.Disk.SegmentBytes = 64 << 20
	}
	if c.Disk.MaxBytes == 0 {
		c.Disk.MaxBytes = 1 << 30
	}
	if c.Disk.Fsync == "" {
		c.Disk.Fsync = FsyncInterval
	}
	setDur(&c.Disk.FsyncInterval, time.Second)
	if c.Overflow.Policy == "" {
		c.Overflow.Policy = DropNewest
	}
	setDur(&c.Overflow.BlockTimeout, time.Second)
	setDur(&c.Timeout, 30*time.Second)
	setInt(&c.ProgressEvery, 100000)
	setDur(&c.ProgressInterval, 10*time.Second)
	return c
}

func setInt(p *int, v int) {
	if *p == 0 {
		*p = v
	}
}

func setDur(p *Duration, v time.Duration) {
	if *p == 0 {
		*p = Duration(v)
	}
}

// Validate reports every invalid field, each error naming its field.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, msg string) { errs = append(errs, fmt.Errorf("queue.%s: %s", field, msg)) }
	if c.Memory.Records != nil && *c.Memory.Records < 0 {
		bad("memory.records", "must be >= 0")
	}
	if c.Memory.Records != nil && *c.Memory.Records == 0 && c.Disk.Dir == "" {
		bad("memory.records", "must be > 0 when disk.dir is empty")
	}
	if c.Workers <= 0 {
		bad("workers", "must be > 0")
	}
	if c.Batch.MaxRecords <= 0 {
		bad("batch.max_records", "must be > 0")
	}
	if c.Batch.MaxBytes <= 0 {
		bad("batch.max_bytes", "must be > 0")
	}
	if c.Batch.MaxWait <= 0 {
		bad("batch.max_wait", "must be > 0")
	}
	if c.Retry.InitialBackoff <= 0 {
		bad("retry.initial_backoff", "must be > 0")
	}
	if c.Retry.MaxBackoff < c.Retry.InitialBackoff {
		bad("retry.max_backoff", "must be >= retry.initial_backoff")
	}
	if c.Retry.MaxElapsed < 0 {
		bad("retry.max_elapsed", "must be >= 0 (0 = retry forever)")
	}
	if c.RateLimit.RecordsPerSecond < 0 {
		bad("rate_limit.records_per_second", "must be >= 0 (0 = unlimited)")
	}
	if c.RateLimit.RecordsPerSecond > 0 && c.RateLimit.Burst <= 0 {
		bad("rate_limit.burst", "must be > 0")
	}
	if c.Disk.Dir != "" {
		if c.Disk.SegmentBytes <= 0 {
			bad("disk.segment_bytes", "must be > 0")
		}
		if c.Disk.MaxBytes < c.Disk.SegmentBytes {
			bad("disk.max_bytes", "must be >= disk.segment_bytes")
		}
		switch c.Disk.Fsync {
		case FsyncAlways, FsyncNever:
		case FsyncInterval:
			if c.Disk.FsyncInterval <= 0 {
				bad("disk.fsync_interval", "must be > 0")
			}
		default:
			bad("disk.fsync", fmt.Sprintf("%q: must be always, interval or never", c.Disk.Fsync))
		}
	}
	switch c.Overflow.Policy {
	case DropNewest, DropOldest:
	case Block:
		if c.Overflow.BlockTimeout <= 0 {
			bad("overflow.block_timeout", "must be > 0")
		}
	default:
		bad("overflow.policy", fmt.Sprintf("%q: must be drop_newest, drop_oldest or block", c.Overflow.Policy))
	}
	if c.Timeout <= 0 {
		bad("timeout", "must be > 0")
	}
	if c.ProgressEvery <= 0 {
		bad("progress_every", "must be > 0")
	}
	return errors.Join(errs...)
}
