// Command etcd is etcd built from the pinned go.etcd.io/etcd/server/v3 release
// (see go.mod), for the e2e test control plane.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
