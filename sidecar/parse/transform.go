package parse

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/meshtrail/meshtrail/internal/record"
)

// Transform is one step of the chain applied to a parsed record, in the
// order given. Exactly one of its members is set.
type Transform struct {
	// Rename moves a field to another name.
	Rename *struct {
		From string `json:"from"`
		To   string `json:"to"`
	} `json:"rename,omitempty"`
	// Drop removes fields (secrets, noise).
	Drop []string `json:"drop,omitempty"`
	// Add sets fields to fixed values.
	Add map[string]string `json:"add,omitempty"`
	// Convert checks a field has a type and writes it canonically
	// (int, float, bool); a value that does not convert is dropped.
	Convert *struct {
		Field string `json:"field"`
		Type  string `json:"type"`
	} `json:"convert,omitempty"`
	// Timestamp takes the record's time from a field (Go layout; empty:
	// RFC 3339 or Unix time, as the json parser reads it).
	Timestamp *struct {
		Field  string `json:"field"`
		Layout string `json:"layout,omitempty"`
	} `json:"timestamp,omitempty"`
	// Level takes the record's level from a field.
	Level *struct {
		Field string `json:"field"`
	} `json:"level,omitempty"`
}

// Validate checks the step; field names the step in errors.
func (t *Transform) Validate(field string) error {
	n := 0
	for _, set := range []bool{t.Rename != nil, t.Drop != nil, t.Add != nil, t.Convert != nil, t.Timestamp != nil, t.Level != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("%s: exactly one of rename, drop, add, convert, timestamp, level", field)
	}
	switch {
	case t.Rename != nil && (t.Rename.From == "" || t.Rename.To == ""):
		return fmt.Errorf("%s.rename: from and to are required", field)
	case t.Convert != nil && t.Convert.Field == "":
		return fmt.Errorf("%s.convert.field: required", field)
	case t.Convert != nil && t.Convert.Type != "int" && t.Convert.Type != "float" && t.Convert.Type != "bool":
		return fmt.Errorf("%s.convert.type: %q, want int, float or bool", field, t.Convert.Type)
	case t.Timestamp != nil && t.Timestamp.Field == "":
		return fmt.Errorf("%s.timestamp.field: required", field)
	case t.Level != nil && t.Level.Field == "":
		return fmt.Errorf("%s.level.field: required", field)
	}
	return nil
}

// Apply runs the step on r.
func (t *Transform) Apply(r *record.Record) {
	get := func(k string) (string, bool) {
		v, ok := r.Fields[k]
		return v, ok
	}
	set := func(k, v string) {
		if r.Fields == nil {
			r.Fields = map[string]string{}
		}
		r.Fields[k] = v
	}
	switch {
	case t.Rename != nil:
		if v, ok := get(t.Rename.From); ok {
			delete(r.Fields, t.Rename.From)
			set(t.Rename.To, v)
		}
	case t.Drop != nil:
		for _, k := range t.Drop {
			delete(r.Fields, k)
		}
	case t.Add != nil:
		for k, v := range t.Add {
			set(k, v)
		}
	case t.Convert != nil:
		v, ok := get(t.Convert.Field)
		if !ok {
			return
		}
		var out string
		var err error
		switch t.Convert.Type {
		case "int":
			var i int64
			i, err = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			out = strconv.FormatInt(i, 10)
		case "float":
			var f float64
			f, err = strconv.ParseFloat(strings.TrimSpace(v), 64)
			out = strconv.FormatFloat(f, 'g', -1, 64)
		case "bool":
			var b bool
			b, err = strconv.ParseBool(strings.TrimSpace(v))
			out = strconv.FormatBool(b)
		}
		if err != nil {
			delete(r.Fields, t.Convert.Field)
			return
		}
		set(t.Convert.Field, out)
	case t.Timestamp != nil:
		v, ok := get(t.Timestamp.Field)
		if !ok {
			return
		}
		var ts time.Time
		var good bool
		if t.Timestamp.Layout != "" {
			var err error
			ts, err = time.Parse(t.Timestamp.Layout, v)
			good = err == nil
		} else {
			ts, good = ParseTime(v)
		}
		if good {
			r.StartTime = ts
			delete(r.Fields, t.Timestamp.Field)
		}
	case t.Level != nil:
		if v, ok := get(t.Level.Field); ok {
			r.Level = strings.ToLower(v)
			delete(r.Fields, t.Level.Field)
		}
	}
}
