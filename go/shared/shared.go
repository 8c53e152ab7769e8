// Package shared holds what halkyon's Go plugins and Go hosts share: the
// go-plugin handshake, the plugin set, and the glue that serves or dials the
// capability service (gen/capability/v1, generated from the same .proto as
// the TypeScript side).
//
// It holds no capability logic: a plugin implements
// capabilityv1.CapabilityPluginServer and calls Serve.
package shared

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	capabilityv1 "halkyon.io/plugins/gen/capability/v1"
)

// Handshake is the go-plugin handshake of halkyon's app protocol version 1.
// The magic cookie is the original Halkyon's, a UX guard rather than security.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "HALKYON_CAPABILITY_PLUGIN",
	MagicCookieValue: "io.halkyon.capability.plugin",
}

// PluginName is the name the capability service is dispensed under.
const PluginName = "capability"

// CapabilityPlugin is the go-plugin GRPCPlugin of the capability service. A
// plugin sets Impl; a host leaves it nil and dispenses a client.
type CapabilityPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl capabilityv1.CapabilityPluginServer
}

// GRPCServer registers the capability service on the plugin's server.
func (p *CapabilityPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	capabilityv1.RegisterCapabilityPluginServer(s, p.Impl)
	return nil
}

// GRPCClient returns a capabilityv1.CapabilityPluginClient over the host's connection.
func (p *CapabilityPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return capabilityv1.NewCapabilityPluginClient(c), nil
}

// PluginSet is the plugin set for a host (impl nil) or a plugin.
func PluginSet(impl capabilityv1.CapabilityPluginServer) plugin.PluginSet {
	return plugin.PluginSet{PluginName: &CapabilityPlugin{Impl: impl}}
}

// NewLogger is a plugin's logger: hclog JSON lines on stderr, which halkyon's
// host and go-plugin hosts both parse into levels and fields.
func NewLogger(name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Trace, JSONFormat: true, Output: hclog.DefaultOutput})
}

// Serve serves impl as a halkyon plugin until the host stops it. It exits the
// process; run by hand, it prints go-plugin's message and exits 1. Unlike a
// bare go-plugin plugin, it also exits when its host dies.
func Serve(impl capabilityv1.CapabilityPluginServer, logger hclog.Logger) {
	if os.Getenv(DebugKey) == "1" {
		serveForDebugging(impl, logger)
		return
	}
	go watchHost(logger)
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         PluginSet(impl),
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          logger,
	})
}

// DebugKey set to 1 starts a plugin by hand (under dlv, say): it serves with
// no host, no magic cookie and no host to watch, prints the --reattach value
// that connects halkyon to it, and runs until Ctrl-C. It is go-plugin's
// reattach: halkyon neither starts nor stops it.
const DebugKey = "HALKYON_PLUGIN_DEBUG"

func serveForDebugging(impl capabilityv1.CapabilityPluginServer, logger hclog.Logger) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	reattach := make(chan *plugin.ReattachConfig, 1)
	closed := make(chan struct{})
	go func() {
		select {
		case c := <-reattach:
			value := fmt.Sprintf("%s=%s:%s", logger.Name(), c.Addr.Network(), c.Addr.String())
			fmt.Fprintf(os.Stderr, "plugin %s is serving for debugging (Ctrl-C stops it). Connect halkyon to it with:\n"+
				"  halkyon run --reattach %s\n  halkyon plugins render --reattach %s -f capability.yaml\n", logger.Name(), value, value)
		case <-ctx.Done():
		}
	}()
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         PluginSet(impl),
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          logger,
		Test:            &plugin.ServeTestConfig{Context: ctx, ReattachConfigCh: reattach, CloseCh: closed},
	})
	<-closed
}

// HostPidKey is where halkyon's host names its pid, so that a plugin whose
// host died before the plugin started watching (its parent is then already
// init) still notices. Go hosts do not set it.
const HostPidKey = "HALKYON_HOST_PID"

// watchHost exits the plugin within a quarter of a second of its host's
// death. go-plugin leaves a plugin running when its host is killed (the
// plugin is re-parented); halkyon's SDK plugins exit, and so do Go plugins
// served here. (Windows does not re-parent: there it never fires.)
func watchHost(logger hclog.Logger) {
	host := os.Getppid()
	if pid, err := strconv.Atoi(os.Getenv(HostPidKey)); err == nil && pid > 0 {
		host = pid
	}
	for range time.Tick(250 * time.Millisecond) {
		if os.Getppid() != host {
			logger.Debug("plugin stopping", "reason", "the host process exited")
			os.Exit(0)
		}
	}
}
