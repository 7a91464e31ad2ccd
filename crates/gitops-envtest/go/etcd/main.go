// Command etcd is a thin entry point over etcd's server module, so that the
// toolkit's test control plane can build etcd from the Go module proxy at a
// pinned release without a checkout of the etcd repository.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
