// Command zincbulk measures how fast an Elasticsearch-compatible store
// (zincsearch) takes meshtrail's _bulk requests, with the sink's stable
// _id or without any, at a given batch size and number of concurrent
// requests: the slow-store question of issue 11 (is it the ids, the
// workers or the batches that keep the store from being busy?).
//
// The bodies are the elasticsearch sink's own (Exporter.Encode); "-ids
// none" removes the "_id" from each action line, as a shipper without
// stable ids sends them. Records come from internal/recordtest.
//
//	zincbulk -url http://127.0.0.1:4080/es -records 50000 -batch 500 -workers 2 -ids stable
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshtrail/meshtrail/internal/recordtest"
	"github.com/meshtrail/meshtrail/internal/sink/elasticsearch"
)

var idField = regexp.MustCompile(`,"_id":"[0-9a-f]{32}"`)

func main() {
	url := flag.String("url", "", "API base, _bulk is appended (zincsearch: http://host:port/es)")
	user := flag.String("user", "admin", "basic auth user")
	passEnv := flag.String("password-env", "ZINC_PASSWORD", "environment variable holding the password")
	records := flag.Int("records", 50000, "records to send")
	batch := flag.Int("batch", 500, "records per _bulk request")
	workers := flag.Int("workers", 2, "concurrent requests")
	ids := flag.String("ids", "stable", "stable (the sink's _id) or none")
	index := flag.String("index", "bench-{date}", "index template")
	flag.Parse()
	if *url == "" || (*ids != "stable" && *ids != "none") {
		flag.Usage()
		os.Exit(2)
	}
	e, err := elasticsearch.New(elasticsearch.Options{URL: *url, Index: *index})
	if err != nil {
		log.Fatal(err)
	}
	// Bodies are built before the clock starts: the store is measured.
	all := recordtest.Batch("zincbulk", uint64(time.Now().UnixNano()), *records)
	var bodies [][]byte
	for i := 0; i < len(all); i += *batch {
		b := e.Encode(nil, all[i:min(i+*batch, len(all))])
		if *ids == "none" {
			b = idField.ReplaceAll(b, nil)
		}
		bodies = append(bodies, b)
	}
	client := &http.Client{Timeout: 10 * time.Minute}
	pass := os.Getenv(*passEnv)
	var next atomic.Int64
	var docs, failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(bodies) {
					return
				}
				n, err := post(client, *url+"/_bulk", *user, pass, bodies[i])
				if err != nil {
					log.Print(err)
					failed.Add(1)
					continue
				}
				docs.Add(int64(n))
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	fmt.Printf("ids=%s batch=%d workers=%d records=%d stored=%d failed_requests=%d wall=%.2fs docs_per_s=%.0f\n",
		*ids, *batch, *workers, *records, docs.Load(), failed.Load(), wall.Seconds(), float64(docs.Load())/wall.Seconds())
}

// post sends one _bulk body and returns how many items the store accepted.
func post(c *http.Client, url, user, pass string, body []byte) (int, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.SetBasicAuth(user, pass)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return 0, fmt.Errorf("bulk: status %d: %.200s", resp.StatusCode, data)
	}
	var out struct {
		Items []map[string]struct {
			Status int `json:"status"`
		} `json:"items"`
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return 0, fmt.Errorf("bulk response: %w", err)
	}
	n := 0
	for _, it := range out.Items {
		for _, v := range it {
			if v.Status/100 == 2 || v.Status == 0 {
				n++
			}
		}
	}
	return n, nil
}
