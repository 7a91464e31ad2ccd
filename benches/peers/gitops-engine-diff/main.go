// Command gitops-engine-diff times Argo CD's gitops-engine diff (pkg/diff.Diff) on a corpus of
// (desired, live, predicted) object triples, so that the gitops-diff benchmark compares both
// engines on the same inputs in one run and checks that they find the same drifted objects.
//
// Usage:
//
//	gitops-engine-diff -mode three-way|server-side -openapi <swagger.json> [-rounds n] <corpus.json>
//
// The corpus is a JSON array of {"desired": {...}, "live": {...}, "predicted": {...}} objects:
// "predicted" is what the apiserver's server-side apply dry run of "desired" returns (live with
// the drift undone), which the server-side path compares against live.
//
// Both modes diff with the normaliser Argo CD's application controller builds with its default
// settings (util/argo/diff.newDiffNormalizer): argo-cd's ignore-differences normaliser over the
// resource overrides argocd-cm gives by default (status ignored for every kind,
// settings.GetResourceOverrides with resource.compareoptions unset) composed with argo-cd's
// known-types normaliser; aggregated roles are not ignored (Argo CD's default), and the GVK
// parser is built from the Kubernetes OpenAPI v2 document as gitops-engine's cluster cache
// builds it.
//
//   - three-way: diff.Diff as Argo CD calls it for a client-side-applied application: the
//     three-way diff driven by the last-applied-configuration annotation.
//   - server-side: diff.Diff with WithServerSideDiff, as Argo CD calls it for an application
//     with ServerSideDiff=true or ServerSideApply=true (the structured-merge path that replaced
//     WithStructuredMergeDiff): the dry-run runner hands back the corpus's "predicted" object
//     (the request itself is not timed), then gitops-engine removes webhook mutations by
//     managed fields with the GVK parser, normalises and compares.
//
// Objects are decoded before the clock starts (as a controller's cache holds them); each round
// diffs every triple once. The program prints one line:
// "ns_per_object=<best> rounds_ns_per_object=<r1,r2,...> objects=<n> modified=<count> modified_indices=<i,j,...>".
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/diff"
	"github.com/argoproj/argo-cd/v3/pkg/apis/application/v1alpha1"
	"github.com/argoproj/argo-cd/v3/util/argo/normalizers"
	openapi_v2 "github.com/google/gnostic-models/openapiv2"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/kube-openapi/pkg/util/proto"
)

type triple struct {
	Desired   json.RawMessage `json:"desired"`
	Live      json.RawMessage `json:"live"`
	Predicted json.RawMessage `json:"predicted"`
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

// argoNormalizer is the normaliser Argo CD's controller builds with its default settings: the
// ignore-differences normaliser over the default resource overrides, then the known-types
// normaliser, applied in that order (as util/argo/diff composes them).
type argoNormalizer struct {
	steps []diff.Normalizer
}

func (n *argoNormalizer) Normalize(un *unstructured.Unstructured) error {
	for _, step := range n.steps {
		if err := step.Normalize(un); err != nil {
			return err
		}
	}
	return nil
}

func newArgoNormalizer() (diff.Normalizer, error) {
	// settings.GetResourceOverrides with an empty argocd-cm: resource.compareoptions'
	// ignoreResourceStatusField defaults to "all", which adds /status for */*.
	overrides := map[string]v1alpha1.ResourceOverride{
		"*/*": {IgnoreDifferences: v1alpha1.OverrideIgnoreDiff{JSONPointers: []string{"/status"}}},
	}
	ignore, err := normalizers.NewIgnoreNormalizer(nil, overrides, normalizers.IgnoreNormalizerOpts{})
	if err != nil {
		return nil, fmt.Errorf("ignore-differences normaliser: %w", err)
	}
	knownTypes, err := normalizers.NewKnownTypesNormalizer(overrides)
	if err != nil {
		return nil, fmt.Errorf("known-types normaliser: %w", err)
	}
	return &argoNormalizer{steps: []diff.Normalizer{ignore, knownTypes}}, nil
}

func newGVKParser(path string) (*managedfields.GvkParser, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	doc, err := openapi_v2.ParseDocument(data)
	if err != nil {
		return nil, fmt.Errorf("parsing the OpenAPI document %s: %w", path, err)
	}
	models, err := proto.NewOpenAPIData(doc)
	if err != nil {
		return nil, fmt.Errorf("OpenAPI models of %s: %w", path, err)
	}
	return managedfields.NewGVKParser(models, false)
}

// predictedRunner is the server-side dry run: it hands back the corpus's answer for the object.
type predictedRunner struct {
	byKey map[string]string
}

func objectKey(u *unstructured.Unstructured) string {
	return u.GetAPIVersion() + "/" + u.GetKind() + "/" + u.GetNamespace() + "/" + u.GetName()
}

func (r *predictedRunner) Run(_ context.Context, obj *unstructured.Unstructured, _ string) (string, error) {
	predicted, ok := r.byKey[objectKey(obj)]
	if !ok {
		return "", fmt.Errorf("no predicted object for %s", objectKey(obj))
	}
	return predicted, nil
}

func main() {
	mode := flag.String("mode", "three-way", "three-way or server-side")
	openapiPath := flag.String("openapi", "", "the Kubernetes OpenAPI v2 document (swagger.json) for the GVK parser")
	rounds := flag.Int("rounds", 3, "rounds over the corpus")
	manager := flag.String("manager", "gitops-rs", "the field manager of the applied objects")
	flag.Parse()
	if flag.NArg() != 1 || *rounds < 1 || *openapiPath == "" || (*mode != "three-way" && *mode != "server-side") {
		fmt.Fprintln(os.Stderr, "usage: gitops-engine-diff -mode three-way|server-side -openapi <swagger.json> [-rounds n] <corpus.json>")
		os.Exit(2)
	}
	data, err := os.ReadFile(flag.Arg(0))
	if err != nil {
		fail("reading %s: %v", flag.Arg(0), err)
	}
	var triples []triple
	if err := json.Unmarshal(data, &triples); err != nil {
		fail("parsing %s: %v", flag.Arg(0), err)
	}
	gvkParser, err := newGVKParser(*openapiPath)
	if err != nil {
		fail("GVK parser: %v", err)
	}
	normalizer, err := newArgoNormalizer()
	if err != nil {
		fail("Argo CD normaliser: %v", err)
	}
	runner := &predictedRunner{byKey: map[string]string{}}
	opts := []diff.Option{
		diff.WithNormalizer(normalizer),
		diff.IgnoreAggregatedRoles(false),
		diff.WithGVKParser(gvkParser),
		diff.WithManager(*manager),
	}
	if *mode == "server-side" {
		for i, t := range triples {
			desired, err := decode(t.Desired)
			if err != nil || desired == nil {
				fail("object %d desired: %v", i, err)
			}
			if len(t.Predicted) == 0 {
				fail("object %d has no predicted object", i)
			}
			runner.byKey[objectKey(desired)] = string(t.Predicted)
		}
		opts = append(opts, diff.WithServerSideDiff(true), diff.WithServerSideDryRunner(runner), diff.WithIgnoreMutationWebhook(true))
	}
	ctx := context.Background()
	best := time.Duration(1<<63 - 1)
	perRound := make([]string, 0, *rounds)
	var modifiedIndices []string
	for r := 0; r < *rounds; r++ {
		// Fresh objects each round: Diff normalises its inputs in place.
		configs := make([]*unstructured.Unstructured, len(triples))
		lives := make([]*unstructured.Unstructured, len(triples))
		for i, t := range triples {
			if configs[i], err = decode(t.Desired); err != nil {
				fail("object %d desired: %v", i, err)
			}
			if lives[i], err = decode(t.Live); err != nil {
				fail("object %d live: %v", i, err)
			}
		}
		modifiedIndices = modifiedIndices[:0]
		start := time.Now()
		for i := range triples {
			res, err := diff.Diff(ctx, configs[i], lives[i], opts...)
			if err != nil {
				fail("diff of object %d: %v", i, err)
			}
			if res.Modified {
				modifiedIndices = append(modifiedIndices, strconv.Itoa(i))
			}
		}
		elapsed := time.Since(start)
		if elapsed < best {
			best = elapsed
		}
		perRound = append(perRound, fmt.Sprintf("%.1f", float64(elapsed.Nanoseconds())/float64(len(triples))))
	}
	fmt.Printf("ns_per_object=%.1f rounds_ns_per_object=%s objects=%d modified=%d modified_indices=%s\n",
		float64(best.Nanoseconds())/float64(len(triples)), strings.Join(perRound, ","), len(triples),
		len(modifiedIndices), strings.Join(modifiedIndices, ","))
}
