package parse

import (
	"fmt"
	"strconv"

	"github.com/meshtrail/meshtrail/internal/record"
)

// Logfmt parses key=value pairs separated by spaces, values bare or
// double-quoted with Go/JSON escapes (the format of go-kit/log, logrus's
// text formatter, Heroku's logfmt). A bare key is a flag with an empty
// value. The usual keys give message, level, time and trace context, as
// for JSON.
type Logfmt struct{ opts Options }

// Parse implements Parser.
func (p Logfmt) Parse(line []byte, r *record.Record) error {
	fields, err := scanLogfmt(string(line))
	if err != nil {
		Raw(p).Parse(line, r)
		return err
	}
	applyFields(fields, r, p.opts)
	if r.Message == "" && len(r.Fields) == 0 {
		r.Message = string(line)
	}
	return nil
}

func scanLogfmt(s string) (map[string]string, error) {
	fields := make(map[string]string, 8)
	i := 0
	for i < len(s) {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		if i == len(s) {
			break
		}
		start := i
		for i < len(s) && s[i] != '=' && s[i] != ' ' && s[i] != '\t' && s[i] != '"' {
			i++
		}
		key := s[start:i]
		if key == "" {
			return nil, fmt.Errorf("logfmt at byte %d: expected a key", i)
		}
		if i == len(s) || s[i] != '=' {
			fields[key] = ""
			continue
		}
		i++ // '='
		if i < len(s) && s[i] == '"' {
			j := i + 1
			for j < len(s) && s[j] != '"' {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(s) {
				return nil, fmt.Errorf("logfmt at byte %d: unterminated quoted value of %q", i, key)
			}
			v, err := strconv.Unquote(s[i : j+1])
			if err != nil {
				return nil, fmt.Errorf("logfmt at byte %d: value of %q: %v", i, key, err)
			}
			fields[key] = v
			i = j + 1
			continue
		}
		start = i
		for i < len(s) && s[i] != ' ' && s[i] != '\t' {
			i++
		}
		fields[key] = s[start:i]
	}
	if len(fields) == 0 {
		return nil, fmt.Errorf("logfmt: no key=value pair")
	}
	return fields, nil
}
