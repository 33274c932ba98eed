package main

import (
	"fmt"
	"sort"
)

// decode fills c from a parsed JSON document, rejecting unknown fields and
// wrong types with the field's path (tracing.formats[1], ...).
func (c *Config) decode(tree any) error {
	root, err := object(tree, "configuration")
	if err != nil {
		return err
	}
	if err := onlyKeys(root, "", "reporter", "tracing", "metrics", "access_log"); err != nil {
		return err
	}
	if c.Reporter, err = optString(root, "", "reporter"); err != nil {
		return err
	}
	if v, ok := root["tracing"]; ok {
		t, err := object(v, "tracing")
		if err != nil {
			return err
		}
		if err := onlyKeys(t, "tracing.", "disabled", "formats", "sampling_percentage", "tracestate_key"); err != nil {
			return err
		}
		if c.Tracing.Disabled, err = optBool(t, "tracing.", "disabled"); err != nil {
			return err
		}
		if c.Tracing.Formats, err = optStrings(t, "tracing.", "formats"); err != nil {
			return err
		}
		if v, ok := t["sampling_percentage"]; ok {
			f, isNum := v.(float64)
			if !isNum {
				return fmt.Errorf("tracing.sampling_percentage: want a number, got %s", jsonType(v))
			}
			c.Tracing.SamplingPercentage = &f
		}
		if c.Tracing.TraceStateKey, err = optString(t, "tracing.", "tracestate_key"); err != nil {
			return err
		}
	}
	if v, ok := root["metrics"]; ok {
		m, err := object(v, "metrics")
		if err != nil {
			return err
		}
		if err := onlyKeys(m, "metrics.", "disabled", "overrides", "max_series"); err != nil {
			return err
		}
		if c.Metrics.Disabled, err = optBool(m, "metrics.", "disabled"); err != nil {
			return err
		}
		if v, ok := m["max_series"]; ok {
			f, isNum := v.(float64)
			if !isNum || f != float64(int(f)) {
				return fmt.Errorf("metrics.max_series: want an integer, got %s", jsonType(v))
			}
			c.Metrics.MaxSeries = int(f)
		}
		if v, ok := m["overrides"]; ok {
			list, isList := v.([]any)
			if !isList {
				return fmt.Errorf("metrics.overrides: want a list, got %s", jsonType(v))
			}
			for i, item := range list {
				path := fmt.Sprintf("metrics.overrides[%d]", i)
				o, err := object(item, path)
				if err != nil {
					return err
				}
				if err := onlyKeys(o, path+".", "match", "tag_overrides"); err != nil {
					return err
				}
				var mo MetricOverride
				if mo.Match, err = optString(o, path+".", "match"); err != nil {
					return err
				}
				if tv, ok := o["tag_overrides"]; ok {
					tags, err := object(tv, path+".tag_overrides")
					if err != nil {
						return err
					}
					mo.TagOverrides = map[string]TagOverride{}
					names := make([]string, 0, len(tags))
					for n := range tags {
						names = append(names, n)
					}
					sort.Strings(names)
					for _, n := range names {
						tpath := fmt.Sprintf("%s.tag_overrides[%s]", path, n)
						t, err := object(tags[n], tpath)
						if err != nil {
							return err
						}
						if err := onlyKeys(t, tpath+".", "operation", "value"); err != nil {
							return err
						}
						var to TagOverride
						if to.Operation, err = optString(t, tpath+".", "operation"); err != nil {
							return err
						}
						if to.Value, err = optString(t, tpath+".", "value"); err != nil {
							return err
						}
						mo.TagOverrides[n] = to
					}
				}
				c.Metrics.Overrides = append(c.Metrics.Overrides, mo)
			}
		}
	}
	if v, ok := root["access_log"]; ok {
		a, err := object(v, "access_log")
		if err != nil {
			return err
		}
		if err := onlyKeys(a, "access_log.", "disabled", "headers", "attributes"); err != nil {
			return err
		}
		if c.AccessLog.Disabled, err = optBool(a, "access_log.", "disabled"); err != nil {
			return err
		}
		if c.AccessLog.Headers, err = optStrings(a, "access_log.", "headers"); err != nil {
			return err
		}
		if c.AccessLog.Attributes, err = optStrings(a, "access_log.", "attributes"); err != nil {
			return err
		}
	}
	return nil
}

func object(v any, path string) (map[string]any, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: want an object, got %s", path, jsonType(v))
	}
	return m, nil
}

// onlyKeys rejects fields the filter does not know: a typo must not be
// silently ignored.
func onlyKeys(m map[string]any, prefix string, known ...string) error {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
outer:
	for _, k := range names {
		for _, n := range known {
			if k == n {
				continue outer
			}
		}
		return fmt.Errorf("%s%s: unknown field", prefix, k)
	}
	return nil
}

func optString(m map[string]any, prefix, key string) (string, error) {
	v, ok := m[key]
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%s%s: want a string, got %s", prefix, key, jsonType(v))
	}
	return s, nil
}

func optBool(m map[string]any, prefix, key string) (bool, error) {
	v, ok := m[key]
	if !ok || v == nil {
		return false, nil
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("%s%s: want true or false, got %s", prefix, key, jsonType(v))
	}
	return b, nil
}

func optStrings(m map[string]any, prefix, key string) ([]string, error) {
	v, ok := m[key]
	if !ok || v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s%s: want a list of strings, got %s", prefix, key, jsonType(v))
	}
	out := make([]string, 0, len(list))
	for i, item := range list {
		s, ok := item.(string)
		if !ok {
			return nil, fmt.Errorf("%s%s[%d]: want a string, got %s", prefix, key, i, jsonType(item))
		}
		out = append(out, s)
	}
	return out, nil
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
