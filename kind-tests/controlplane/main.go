// Command controlplane is a multi-call binary that runs the pieces of a
// local Kubernetes control plane for kubevigil's scenario tests:
//
//	controlplane etcd [flags]                embedded etcd (go.etcd.io/etcd/server/v3)
//	controlplane apiserver [flags]           upstream kube-apiserver command
//	controlplane controller-manager [flags]  upstream kube-controller-manager command
//	controlplane scheduler [flags]           upstream kube-scheduler command
//	controlplane kubelet [flags]             upstream kubelet command
//	controlplane proxy [flags]               upstream kube-proxy command
//	controlplane version                     prints the Kubernetes gitVersion
//
// Each subcommand is meant to run as its own process. See README.md.
package main

import (
	"context"
	"fmt"
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/component-base/version"
	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanagerapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxyapp "k8s.io/kubernetes/cmd/kube-proxy/app"
	schedulerapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubeletapp "k8s.io/kubernetes/cmd/kubelet/app"
)

const usage = `usage: controlplane <subcommand> [flags]

subcommands:
  etcd                 run an embedded etcd server (controlplane etcd --help)
  apiserver            run kube-apiserver (flags passed through unchanged)
  controller-manager   run kube-controller-manager (flags passed through unchanged)
  scheduler            run kube-scheduler (flags passed through unchanged)
  kubelet              run kubelet (flags passed through unchanged)
  proxy                run kube-proxy (flags passed through unchanged)
  version              print the Kubernetes version this binary was built from
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	sub, rest := os.Args[1], os.Args[2:]
	switch sub {
	case "etcd":
		os.Exit(runEtcd(rest))
	case "apiserver", "kube-apiserver":
		// cobra reads os.Args[1:] when no args were set explicitly.
		os.Args = append([]string{"kube-apiserver"}, rest...)
		os.Exit(cli.Run(apiserverapp.NewAPIServerCommand()))
	case "controller-manager", "kube-controller-manager":
		os.Args = append([]string{"kube-controller-manager"}, rest...)
		os.Exit(cli.Run(controllermanagerapp.NewControllerManagerCommand()))
	case "scheduler", "kube-scheduler":
		os.Args = append([]string{"kube-scheduler"}, rest...)
		os.Exit(cli.Run(schedulerapp.NewSchedulerCommand()))
	case "kubelet":
		os.Args = append([]string{"kubelet"}, rest...)
		os.Exit(cli.Run(kubeletapp.NewKubeletCommand(context.Background())))
	case "proxy", "kube-proxy":
		os.Args = append([]string{"kube-proxy"}, rest...)
		os.Exit(cli.Run(proxyapp.NewProxyCommand()))
	case "version", "--version":
		fmt.Println(version.Get().GitVersion)
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "controlplane: unknown subcommand %q\n\n%s", sub, usage)
		os.Exit(2)
	}
}
