// Command gitops-engine-diff times Argo CD's gitops-engine diff (pkg/diff.Diff, the client-side
// three-way diff driven by the last-applied-configuration annotation) on a corpus of
// (desired, live) object pairs, so that the gitops-diff benchmark compares both engines on the
// same inputs in one run.
//
// Usage: gitops-engine-diff <corpus.json> [rounds]
//
// The corpus is a JSON array of {"desired": {...}, "live": {...}} objects. Objects are decoded
// before the clock starts (as a controller's cache would hold them); each round diffs every pair
// once. The program prints one line:
// "ns_per_object=<best round, ns per object> objects=<n> modified=<count>".
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/diff"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

type pair struct {
	Desired json.RawMessage `json:"desired"`
	Live    json.RawMessage `json:"live"`
}

func decode(raw json.RawMessage) (*unstructured.Unstructured, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(raw); err != nil {
		return nil, err
	}
	return u, nil
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: gitops-engine-diff <corpus.json> [rounds]")
		os.Exit(2)
	}
	rounds := 3
	if len(os.Args) > 2 {
		n, err := strconv.Atoi(os.Args[2])
		if err != nil || n < 1 {
			fail("rounds must be a positive integer, got %q", os.Args[2])
		}
		rounds = n
	}
	data, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail("reading %s: %v", os.Args[1], err)
	}
	var pairs []pair
	if err := json.Unmarshal(data, &pairs); err != nil {
		fail("parsing %s: %v", os.Args[1], err)
	}
	ctx := context.Background()
	best := time.Duration(1<<63 - 1)
	modified := 0
	for r := 0; r < rounds; r++ {
		// Fresh objects each round: Diff normalises its inputs in place.
		configs := make([]*unstructured.Unstructured, len(pairs))
		lives := make([]*unstructured.Unstructured, len(pairs))
		for i, p := range pairs {
			if configs[i], err = decode(p.Desired); err != nil {
				fail("object %d desired: %v", i, err)
			}
			if lives[i], err = decode(p.Live); err != nil {
				fail("object %d live: %v", i, err)
			}
		}
		modified = 0
		start := time.Now()
		for i := range pairs {
			res, err := diff.Diff(ctx, configs[i], lives[i], diff.WithNormalizer(diff.GetNoopNormalizer()))
			if err != nil {
				fail("diff of object %d: %v", i, err)
			}
			if res.Modified {
				modified++
			}
		}
		if elapsed := time.Since(start); elapsed < best {
			best = elapsed
		}
	}
	fmt.Printf("ns_per_object=%.1f objects=%d modified=%d\n", float64(best.Nanoseconds())/float64(len(pairs)), len(pairs), modified)
}
