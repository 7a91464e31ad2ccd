// Command flux-ssa times one reconcile of Flux's server-side apply engine
// (github.com/fluxcd/pkg/ssa, ResourceManager.ApplyAllStaged) on a set of objects, configured as
// Flux's kustomize-controller configures it, so that the gitops-apply benchmark compares both
// appliers on the same objects against the same control plane in one run.
//
// Usage: flux-ssa -kubeconfig <path> (-file <set.yaml> | -dir <directory>) [-namespace <ns>]
// [-concurrency 4] [-qps -1] [-burst 100]
//
// -dir reads every *.yaml and *.yml file under the directory, in path order (as
// kustomize-controller builds a plain directory); -namespace puts every namespaced object
// without a namespace in that namespace (kustomize-controller's targetNamespace).
//
// Before the clock starts, the program builds its client and resolves every kind of the set
// through the RESTMapper, as a running controller has done long before a reconcile. The clock
// covers ApplyAllStaged only (the wait for the applied set is not part of it: the objects of the
// benchmark have no health to wait for). The program prints one line:
// "elapsed_ns=<n> requests=<n> get=<n> list=<n> dry_run=<n> patch=<n> other=<n> created=<n>
// configured=<n> unchanged=<n>" (get: reads of single objects and discovery; patch: writes;
// other: any other write).
package main

import (
	"context"
	"flag"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/polling"
	"github.com/fluxcd/pkg/ssa"
	"github.com/fluxcd/pkg/ssa/utils"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// requestCounts counts the requests the client sends, by kind of request.
type requestCounts struct {
	total, get, list, dryRun, patch, other atomic.Int64
}

type countingTransport struct {
	counts *requestCounts
	next   http.RoundTripper
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c := t.counts
	c.total.Add(1)
	switch req.Method {
	case http.MethodGet:
		// A list addresses a collection: /api/v1/namespaces/<ns>/<plural>, /apis/<g>/<v>/<plural>.
		parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
		isCore := len(parts) > 0 && parts[0] == "api"
		resourceIndex := 3 // apis/<group>/<version>/<plural>
		if isCore {
			resourceIndex = 2 // api/<version>/<plural>
		}
		if len(parts) > resourceIndex+1 && parts[resourceIndex] == "namespaces" {
			resourceIndex += 2
		}
		if len(parts) == resourceIndex+1 {
			c.list.Add(1)
		} else {
			c.get.Add(1)
		}
	case http.MethodPatch:
		if req.URL.Query().Get("dryRun") != "" {
			c.dryRun.Add(1)
		} else {
			c.patch.Add(1)
		}
	default:
		c.other.Add(1)
	}
	return t.next.RoundTrip(req)
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "flux-ssa: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "path of the kubeconfig")
	file := flag.String("file", "", "multi-document YAML file of the objects to apply")
	dir := flag.String("dir", "", "directory of YAML files of the objects to apply (instead of -file)")
	namespace := flag.String("namespace", "", "namespace of the namespaced objects that name none")
	concurrency := flag.Int("concurrency", 4, "concurrent dry-runs (kustomize-controller --concurrent-ssa, default 4)")
	qps := flag.Float64("qps", -1, "client-side rate limit in requests per second; negative: none (kustomize-controller's default is 50)")
	burst := flag.Int("burst", 100, "client-side rate limit burst (kustomize-controller's default is 100)")
	flag.Parse()
	if *kubeconfig == "" || (*file == "") == (*dir == "") {
		flag.Usage()
		os.Exit(2)
	}

	config, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fail("loading %s: %v", *kubeconfig, err)
	}
	config.QPS = float32(*qps)
	config.Burst = *burst
	counts := &requestCounts{}
	config.WrapTransport = func(next http.RoundTripper) http.RoundTripper {
		return &countingTransport{counts: counts, next: next}
	}
	kubeClient, err := client.New(config, client.Options{})
	if err != nil {
		fail("creating the client: %v", err)
	}

	files := []string{*file}
	if *dir != "" {
		files = nil
		err := filepath.WalkDir(*dir, func(path string, entry fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !entry.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			fail("reading %s: %v", *dir, err)
		}
		sort.Strings(files)
	}
	var objects []*unstructured.Unstructured
	for _, name := range files {
		reader, err := os.Open(name)
		if err != nil {
			fail("opening %s: %v", name, err)
		}
		read, err := utils.ReadObjects(reader)
		reader.Close()
		if err != nil {
			fail("reading %s: %v", name, err)
		}
		objects = append(objects, read...)
	}
	// A running controller resolved these kinds long ago: not part of a reconcile.
	for _, object := range objects {
		mapping, err := kubeClient.RESTMapper().RESTMapping(object.GroupVersionKind().GroupKind(), object.GroupVersionKind().Version)
		if err != nil {
			fail("resolving %s: %v", object.GroupVersionKind(), err)
		}
		if *namespace != "" && object.GetNamespace() == "" && mapping.Scope.Name() == meta.RESTScopeNameNamespace {
			object.SetNamespace(*namespace)
		}
	}

	poller := polling.NewStatusPoller(kubeClient, kubeClient.RESTMapper(), polling.Options{})
	manager := ssa.NewResourceManager(kubeClient, poller, ssa.Owner{
		Field: "kustomize-controller",
		Group: "kustomize.toolkit.fluxcd.io",
	})
	manager.SetConcurrency(*concurrency)
	manager.SetOwnerLabels(objects, "bench", "flux-system")

	// The apply options kustomize-controller uses for a Kustomization without force.
	options := ssa.DefaultApplyOptions()
	options.Cleanup = ssa.ApplyCleanupOptions{
		Annotations: []string{corev1.LastAppliedConfigAnnotation, "kustomize.toolkit.fluxcd.io/checksum"},
		Labels:      []string{"kustomize.toolkit.fluxcd.io/checksum"},
		FieldManagers: []ssa.FieldManager{
			{Name: "kubectl", OperationType: metav1.ManagedFieldsOperationApply},
			{Name: "kubectl", OperationType: metav1.ManagedFieldsOperationUpdate},
			{Name: "before-first-apply", OperationType: metav1.ManagedFieldsOperationUpdate},
			{Name: "kustomize-controller", OperationType: metav1.ManagedFieldsOperationUpdate},
		},
		Exclusions: map[string]string{"kustomize.toolkit.fluxcd.io/ssa": "Ignore"},
	}
	options.ForceSelector = map[string]string{"kustomize.toolkit.fluxcd.io/force": "Enabled"}
	options.ExclusionSelector = map[string]string{"kustomize.toolkit.fluxcd.io/reconcile": "disabled"}
	options.IfNotPresentSelector = map[string]string{"kustomize.toolkit.fluxcd.io/ssa": "IfNotPresent"}

	counts.total.Store(0)
	counts.get.Store(0)
	counts.list.Store(0)
	counts.dryRun.Store(0)
	counts.patch.Store(0)
	counts.other.Store(0)

	start := time.Now()
	changeSet, err := manager.ApplyAllStaged(context.Background(), objects, options)
	elapsed := time.Since(start)
	if err != nil {
		fail("apply: %v", err)
	}
	actions := map[ssa.Action]int{}
	for _, entry := range changeSet.Entries {
		actions[entry.Action]++
	}
	fmt.Printf("elapsed_ns=%d requests=%d get=%d list=%d dry_run=%d patch=%d other=%d created=%d configured=%d unchanged=%d\n",
		elapsed.Nanoseconds(), counts.total.Load(), counts.get.Load(), counts.list.Load(),
		counts.dryRun.Load(), counts.patch.Load(), counts.other.Load(),
		actions[ssa.CreatedAction], actions[ssa.ConfiguredAction], actions[ssa.UnchangedAction])
}
