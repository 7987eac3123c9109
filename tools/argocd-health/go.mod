// Module argocd-health: Lockstep's Argo CD health check through Argo CD's own Lua package.
//
// This go.mod is the attempt that fails with the module proxy (ADR 0010): Argo CD v3.5.8 is the
// newest release Go 1.26 accepts, and its gitops-engine dependency cannot be fetched. build.sh
// therefore builds main.go inside an Argo CD source tree, with Argo CD's own go.mod.
module lockstep.dev/tools/argocd-health

go 1.26.3

require github.com/argoproj/argo-cd/v3 v3.5.8
