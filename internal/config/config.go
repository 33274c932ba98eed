// Package config holds what every meshtrail component's configuration
// shares: strict YAML loading (an unknown or misspelt field is an error
// that names it) and a Duration that reads "30s" or "5m".
package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Load reads the YAML file at path into dst strictly: unknown fields are
// errors, so a typo is reported instead of silently ignored.
func Load(path string, dst any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return Parse(path, b, dst)
}

// Parse is Load for YAML already read; name says where it came from in
// errors (a path, a ConfigMap key).
func Parse(name string, b []byte, dst any) error {
	if extraDocument(b) {
		return fmt.Errorf("config %s: holds more than one YAML document (a line \"---\" followed by more settings); put every setting in one", name)
	}
	if err := yaml.UnmarshalStrict(b, dst); err != nil {
		return fmt.Errorf("config %s: %s", name, explain(b, err))
	}
	return nil
}

// explain rewrites a decoding error for the person editing the file: the
// YAML goes through JSON, whose wording ("error unmarshaling JSON: while
// decoding JSON: json: unknown field") would only confuse, and an unknown
// field is located by its line.
func explain(b []byte, err error) string {
	msg := err.Error()
	for _, p := range []string{"error unmarshaling JSON: ", "while decoding JSON: ", "json: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	if name, ok := strings.CutPrefix(msg, "unknown field "); ok {
		key := strings.Trim(name, `"`)
		// The decoder does not say where; the lines that start with the
		// key do (several when the name is also valid elsewhere).
		var at []string
		for i, line := range strings.Split(string(b), "\n") {
			if t := strings.TrimLeft(line, " -"); strings.HasPrefix(t, key+":") {
				at = append(at, fmt.Sprint(i+1))
			}
		}
		where := ""
		switch len(at) {
		case 0:
		case 1:
			where = "line " + at[0] + ": "
		default:
			where = "one of lines " + strings.Join(at, ", ") + ": "
		}
		return fmt.Sprintf("%sunknown setting %q: misspelt, or at the wrong indentation (als/examples/ and injector/examples/ list every key)", where, key)
	}
	return msg
}

// extraDocument reports whether b holds a second YAML document, which the
// decoder would silently ignore.
func extraDocument(b []byte) bool {
	settings, marker := false, false // settings seen; a marker after them
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case isDocumentMarker(line):
			marker = marker || settings
		case meaningful(line):
			if marker {
				return true
			}
			settings = true
		}
	}
	return false
}

// isDocumentMarker reports whether line starts a YAML document: "---" at
// the start of the line, alone or followed by a space (a comment, a value).
func isDocumentMarker(line string) bool {
	rest, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), "---")
	return ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t')
}

func meaningful(line string) bool {
	t := strings.TrimSpace(line)
	return t != "" && !strings.HasPrefix(t, "#") && !isDocumentMarker(t)
}

// Duration is a time.Duration written as a Go duration string ("250ms",
// "30s", "5m") in YAML and JSON.
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "30s"-style strings. A bare number is refused: one
// part of meshtrail once read 30 as seconds and another as nanoseconds,
// so the unit is always written.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n json.Number
		if json.Unmarshal(b, &n) == nil {
			return fmt.Errorf("duration %s has no unit: write it with one, like \"%ss\" or \"%sms\"", n, n, n)
		}
		return fmt.Errorf("duration must be a string like \"30s\" or \"5m\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: want a number with a unit, like \"30s\" or \"5m\"", s)
	}
	*d = Duration(v)
	return nil
}

// UnmarshalMerged decodes one JSON object into several structs that share
// its top level (a source's settings beside the pipeline's): each key goes
// to the struct whose json tags name it, and a key none names is an
// "unknown field" error, as a strict decoder would report it.
func UnmarshalMerged(b []byte, dsts ...any) error {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return err
	}
	parts := make([]map[string]json.RawMessage, len(dsts))
	owner := map[string]int{}
	for i, d := range dsts {
		parts[i] = map[string]json.RawMessage{}
		for _, k := range jsonKeys(reflect.TypeOf(d).Elem()) {
			owner[k] = i
		}
	}
	keys := make([]string, 0, len(top))
	for k := range top {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		i, ok := owner[k]
		if !ok {
			return fmt.Errorf("json: unknown field %q", k)
		}
		parts[i][k] = top[k]
	}
	for i, d := range dsts {
		part, _ := json.Marshal(parts[i])
		dec := json.NewDecoder(bytes.NewReader(part))
		dec.DisallowUnknownFields()
		if err := dec.Decode(d); err != nil {
			return err
		}
	}
	return nil
}

// jsonKeys lists the top-level keys encoding/json reads into a struct type.
func jsonKeys(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case tag == "-" || !f.IsExported():
		case tag != "":
			keys = append(keys, tag)
		case f.Anonymous && f.Type.Kind() == reflect.Struct:
			keys = append(keys, jsonKeys(f.Type)...)
		default:
			keys = append(keys, f.Name)
		}
	}
	return keys
}

// FieldError names the configuration field that is wrong.
type FieldError struct {
	Field string // dotted path, e.g. "grpc.max_streams"
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Errorf returns a *FieldError for field.
func Errorf(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}
