package main

import (
	"context"
	"log"
	"net"
	"os"

	"google.golang.org/grpc"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// registration answers the kubelet's plugin watcher, which finds our socket in its
// plugins_registry directory, asks GetInfo where the CSI endpoint is, and reports back. This
// is what node-driver-registrar does for other drivers (that sidecar is not available here).
type registration struct {
	registerapi.UnimplementedRegistrationServer
	driver   *Driver
	endpoint string
}

func (r *registration) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{
		Type:              registerapi.CSIPlugin,
		Name:              r.driver.name,
		Endpoint:          r.endpoint,
		SupportedVersions: []string{"1.0.0"},
	}, nil
}

func (r *registration) NotifyRegistrationStatus(_ context.Context, s *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	r.driver.registered.Store(s.PluginRegistered)
	if s.PluginRegistered {
		log.Printf("registered with the kubelet")
	} else {
		log.Printf("the kubelet refused the registration: %s", s.Error)
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}

// serveRegistration listens on socket (in the kubelet's plugins_registry directory).
func serveRegistration(driver *Driver, socket, endpoint string) (*grpc.Server, error) {
	_ = os.Remove(socket)
	listener, err := net.Listen("unix", socket)
	if err != nil {
		return nil, err
	}
	server := grpc.NewServer()
	registerapi.RegisterRegistrationServer(server, &registration{driver: driver, endpoint: endpoint})
	go func() {
		if err := server.Serve(listener); err != nil {
			log.Printf("registration server: %v", err)
		}
	}()
	return server, nil
}
