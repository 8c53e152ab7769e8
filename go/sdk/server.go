package sdk

// The five RPCs of halkyon.capability.v1, answered from a Plugin. Errors are
// gRPC statuses with a message for the user: a Capability that cannot be
// read is INVALID_ARGUMENT, an unknown dependent id NOT_FOUND, an author's
// function that panics INTERNAL naming the dependent.

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	capabilityv1 "halkyon.io/plugins/gen/capability/v1"
)

type server struct {
	capabilityv1.UnimplementedCapabilityPluginServer
	plugin      Plugin
	description *capabilityv1.PluginDescription
	log         hclog.Logger
}

// NewServer checks the declaration and returns the capability service that
// Serve serves, for tests that call it in process. A nil logger logs nothing.
func NewServer(p Plugin, log hclog.Logger) (capabilityv1.CapabilityPluginServer, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &server{plugin: p, description: describe(&p), log: log}, nil
}

func describe(p *Plugin) *capabilityv1.PluginDescription {
	d := &capabilityv1.PluginDescription{Name: p.Name, Category: p.Category, RefuseUnknownParameters: p.RefuseUnknownParameters}
	for _, t := range p.Types {
		d.Types = append(d.Types, &capabilityv1.TypeInfo{Type: t.Type, Versions: t.Versions, DefaultVersion: t.defaultVersion()})
	}
	for _, x := range p.Parameters {
		d.Parameters = append(d.Parameters, x.info())
	}
	for _, x := range p.Dependents {
		d.Dependents = append(d.Dependents, &capabilityv1.DependentInfo{
			Id: x.ID, ApiVersion: x.APIVersion, Kind: x.Kind,
			Watched: !x.NotWatched, Owned: !x.NotOwned, Created: !x.NotCreated,
			Updated: x.Update != nil, CheckedForReadiness: x.Ready != nil, Binding: x.Binding,
			DependsOn: x.DependsOn, WaitForReady: x.WaitForReady, DeletionPolicy: deletionPolicy(x.DeletionPolicy),
		})
	}
	return d
}

func (s *server) Describe(context.Context, *capabilityv1.DescribeRequest) (*capabilityv1.PluginDescription, error) {
	return s.description, nil
}

func (s *server) capability(raw []byte) (*Capability, error) {
	c, err := decodeCapability(raw)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, msgUnreadableCapability(err))
	}
	return c, nil
}

func (s *server) CheckValidity(_ context.Context, r *capabilityv1.CheckValidityRequest) (*capabilityv1.CheckValidityResponse, error) {
	c, err := s.capability(r.Capability)
	if err != nil {
		return nil, err
	}
	var errs []string
	err = guarded("validity check", func() error { errs = s.plugin.validate(c, s.log); return nil })
	return &capabilityv1.CheckValidityResponse{Errors: errs}, err
}

func (s *server) BuildDependents(_ context.Context, r *capabilityv1.BuildDependentsRequest) (*capabilityv1.BuildDependentsResponse, error) {
	c, err := s.capability(r.Capability)
	if err != nil {
		return nil, err
	}
	ctx := s.plugin.context(c, s.log)
	ctx.Observed = observedOf(r.Observed)
	out := &capabilityv1.BuildDependentsResponse{}
	for _, d := range s.plugin.Dependents {
		if d.Include != nil {
			include := true
			if err := guarded("deciding whether to include dependent "+d.ID, func() error { include = d.Include(ctx); return nil }); err != nil {
				return nil, err
			}
			if !include {
				continue
			}
		}
		raw, err := build(d, ctx)
		if err != nil {
			return nil, err
		}
		built := &capabilityv1.Dependent{Id: d.ID, Object: raw}
		if d.DeletionPolicyFor != nil {
			var policy DeletionPolicy
			if err := guarded("deciding the deletion policy of "+d.ID, func() error { policy = d.DeletionPolicyFor(ctx); return nil }); err != nil {
				return nil, err
			}
			wire := deletionPolicy(policy)
			built.DeletionPolicy = &wire
		}
		out.Dependents = append(out.Dependents, built)
	}
	return out, nil
}

func (s *server) UpdateDependent(_ context.Context, r *capabilityv1.UpdateDependentRequest) (*capabilityv1.UpdateDependentResponse, error) {
	d, err := s.dependent(r.Id)
	if err != nil {
		return nil, err
	}
	if d.Update == nil {
		return &capabilityv1.UpdateDependentResponse{}, nil
	}
	c, err := s.capability(r.Capability)
	if err != nil {
		return nil, err
	}
	ctx := s.plugin.context(c, s.log)
	ctx.Observed = observedOf(r.Observed)
	var existing, desired Object
	if err := guarded("reading existing "+d.ID, func() error { return json.Unmarshal(r.Existing, &existing) }); err != nil {
		return nil, err
	}
	raw, err := build(*d, ctx)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, &desired); err != nil {
		return nil, status.Error(codes.Internal, msgFailed("building dependent "+d.ID, err))
	}
	var updated []byte
	err = guarded("updating dependent "+d.ID, func() (err error) { updated, err = json.Marshal(d.Update(existing, desired, ctx)); return err })
	if err != nil || string(updated) == "null" {
		return &capabilityv1.UpdateDependentResponse{}, err
	}
	return &capabilityv1.UpdateDependentResponse{NeedsUpdate: true, Updated: updated}, nil
}

var states = map[State]capabilityv1.ConditionState{
	StateReady:   capabilityv1.ConditionState_CONDITION_STATE_READY,
	StatePending: capabilityv1.ConditionState_CONDITION_STATE_PENDING,
	StateFailed:  capabilityv1.ConditionState_CONDITION_STATE_FAILED,
}

func (s *server) EvaluateConditions(_ context.Context, r *capabilityv1.EvaluateConditionsRequest) (*capabilityv1.EvaluateConditionsResponse, error) {
	c, err := s.capability(r.Capability)
	if err != nil {
		return nil, err
	}
	ctx := s.plugin.context(c, s.log)
	out := &capabilityv1.EvaluateConditionsResponse{}
	for _, o := range r.Observed {
		d, err := s.dependent(o.Id)
		if err != nil {
			return nil, err
		}
		if d.Ready == nil {
			continue
		}
		var cond Condition
		err = guarded("evaluating dependent "+d.ID, func() error {
			switch obs := o.Observation.(type) {
			case *capabilityv1.ObservedDependent_Object:
				var observed Object
				if err := json.Unmarshal(obs.Object, &observed); err != nil {
					return err
				}
				cond = d.Ready(observed, ctx)
			case *capabilityv1.ObservedDependent_Error:
				cond = fetchFailed(d, ctx, obs.Error)
			default:
				cond = Failed("NoObservation", msgNoObservation(d.ID))
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		state, ok := states[cond.State]
		if !ok {
			state = capabilityv1.ConditionState_CONDITION_STATE_FAILED
		}
		attributes := map[string]string{}
		for k, v := range cond.Attributes {
			attributes[k] = v
		}
		out.Conditions = append(out.Conditions, &capabilityv1.DependentCondition{
			Id: d.ID, State: state, Reason: cond.Reason, Message: cond.Message, Attributes: attributes,
		})
	}
	return out, nil
}

// fetchFailed is a dependent's condition when fetching it failed: missing is
// pending, anything else failed.
func fetchFailed(d *Dependent, ctx *Context, e *capabilityv1.FetchError) Condition {
	if e.Reason == "NotFound" {
		return Pending("NotFound", msgDependentMissing(d.Kind, ctx.Name))
	}
	reason := e.Reason
	if reason == "" {
		reason = "FetchFailed"
	}
	return Failed(reason, e.Message)
}

func (s *server) dependent(id string) (*Dependent, error) {
	ids := []string{}
	for i := range s.plugin.Dependents {
		if s.plugin.Dependents[i].ID == id {
			return &s.plugin.Dependents[i], nil
		}
		ids = append(ids, s.plugin.Dependents[i].ID)
	}
	return nil, status.Error(codes.NotFound, msgUnknownDependent(s.plugin.Name, id, ids))
}

// build runs a dependent's Build and encodes what it returns, with the
// declared apiVersion and kind filled in (an object of another kind is the
// plugin's mistake).
func build(d Dependent, ctx *Context) ([]byte, error) {
	var raw []byte
	err := guarded("building dependent "+d.ID, func() error {
		var object map[string]any
		built, err := json.Marshal(d.Build(ctx))
		if err == nil {
			err = json.Unmarshal(built, &object)
		}
		if err != nil {
			return err
		}
		apiVersion, kind := String(object, "apiVersion"), String(object, "kind")
		if (apiVersion != "" && apiVersion != d.APIVersion) || (kind != "" && kind != d.Kind) {
			return errors.New(msgBuiltOtherKind(d.ID, d.APIVersion, d.Kind, or(apiVersion, d.APIVersion), or(kind, d.Kind)))
		}
		if object == nil {
			object = Object{}
		}
		object["apiVersion"], object["kind"] = d.APIVersion, d.Kind
		raw, err = json.Marshal(object)
		return err
	})
	return raw, err
}

func or(s, otherwise string) string {
	if s == "" {
		return otherwise
	}
	return s
}

// guarded runs an author's function, turning a panic or an error into an
// INTERNAL status that says what failed.
func guarded(what string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = status.Error(codes.Internal, msgFailed(what, r))
		}
	}()
	if err := f(); err != nil {
		return status.Error(codes.Internal, msgFailed(what, err))
	}
	return nil
}

func deletionPolicy(p DeletionPolicy) capabilityv1.DeletionPolicy {
	if p == DeletionOrphan {
		return capabilityv1.DeletionPolicy_DELETION_POLICY_ORPHAN
	}
	return capabilityv1.DeletionPolicy_DELETION_POLICY_DELETE
}

// observedOf reads the observed dependents a request carries (objects only).
func observedOf(wire []*capabilityv1.ObservedDependent) map[string]Object {
	observed := map[string]Object{}
	for _, o := range wire {
		var object Object
		if raw := o.GetObject(); raw != nil && json.Unmarshal(raw, &object) == nil {
			observed[o.Id] = object
		}
	}
	return observed
}
