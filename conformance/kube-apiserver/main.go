// Command kube-test-apiserver runs a real Kubernetes API server
// (k8s.io/kubernetes/cmd/kube-apiserver, the code of the released binary)
// over an etcd embedded in the same process (go.etcd.io/etcd/server), for
// the discovery tests of conformance/tests/kubernetes_real.rs. No kubelet,
// scheduler or controller manager: the tests create the objects and set
// their status themselves.
//
// Usage:
//
//	kube-test-apiserver ETCD_DIR ETCD_CLIENT_PORT ETCD_PEER_PORT [kube-apiserver flags...]
//
// The API server is given --etcd-servers for the embedded etcd; every other
// flag is passed through.
package main

import (
	"fmt"
	"net/url"
	"os"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: kube-test-apiserver ETCD_DIR ETCD_CLIENT_PORT ETCD_PEER_PORT [kube-apiserver flags...]")
		os.Exit(2)
	}
	client, err := startEtcd(os.Args[1], os.Args[2], os.Args[3])
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd: %v\n", err)
		os.Exit(1)
	}
	command := app.NewAPIServerCommand()
	command.SetArgs(append([]string{"--etcd-servers=" + client}, os.Args[4:]...))
	os.Exit(cli.Run(command))
}

// startEtcd starts a one-member etcd on loopback and returns its client URL
// once it serves.
func startEtcd(dir, clientPort, peerPort string) (string, error) {
	client, err := url.Parse("http://127.0.0.1:" + clientPort)
	if err != nil {
		return "", err
	}
	peer, err := url.Parse("http://127.0.0.1:" + peerPort)
	if err != nil {
		return "", err
	}
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cfg.LogLevel = "error"
	cfg.ListenClientUrls = []url.URL{*client}
	cfg.AdvertiseClientUrls = []url.URL{*client}
	cfg.ListenPeerUrls = []url.URL{*peer}
	cfg.AdvertisePeerUrls = []url.URL{*peer}
	cfg.InitialCluster = cfg.Name + "=" + peer.String()
	server, err := embed.StartEtcd(cfg)
	if err != nil {
		return "", err
	}
	select {
	case <-server.Server.ReadyNotify():
		return client.String(), nil
	case <-time.After(60 * time.Second):
		server.Close()
		return "", fmt.Errorf("not ready after 60 s")
	}
}
