// Command argocd-health evaluates Lockstep's Argo CD health check with Argo CD's own Lua code
// path (github.com/argoproj/argo-cd/v3/util/lua: the VM Argo CD's application controller uses,
// gopher-lua with Argo CD's sandbox), on the inputs listed in a health_test.yaml, as Argo CD's
// own TestLuaHealthScript does for its built-in checks. It prints one JSON object per input:
// {"inputPath", "status", "message"}, so Lockstep's tests can compare Argo CD's verdict with the
// expected one and with the Python (lupa) evaluation in tests/support/argocd_health.py.
//
// Usage: argocd-health <health.lua> <health_test.yaml>
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/argoproj/argo-cd/v3/util/lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

type testFile struct {
	Tests []struct {
		InputPath string `json:"inputPath"`
	} `json:"tests"`
}

type verdict struct {
	InputPath string `json:"inputPath"`
	Status    string `json:"status"`
	Message   string `json:"message"`
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: argocd-health <health.lua> <health_test.yaml>")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "argocd-health:", err)
		os.Exit(1)
	}
}

func run(scriptPath, testsPath string) error {
	script, err := os.ReadFile(scriptPath)
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(testsPath)
	if err != nil {
		return err
	}
	var tests testFile
	if err := yaml.Unmarshal(raw, &tests); err != nil {
		return fmt.Errorf("%s: %w", testsPath, err)
	}
	// UseOpenLibs false: the sandbox Argo CD gives a health check from argocd-cm (only the
	// safe libraries), which is stricter than the built-in checks get.
	vm := lua.VM{UseOpenLibs: false}
	out := json.NewEncoder(os.Stdout)
	for _, test := range tests.Tests {
		path := filepath.Join(filepath.Dir(testsPath), test.InputPath)
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(data, &obj.Object); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		status, err := vm.ExecuteHealthLua(obj, string(script))
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if err := out.Encode(verdict{test.InputPath, string(status.Status), status.Message}); err != nil {
			return err
		}
	}
	return nil
}
