// Command kube-scheduler is the upstream Kubernetes scheduler, built from the
// k8s.io/kubernetes module for the real node mode: pods are bound to the node
// by the scheduler, as in a cluster, instead of by the test bed's pod agent.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // --logging-format=json
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // build info metric
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	os.Exit(cli.Run(app.NewSchedulerCommand()))
}
