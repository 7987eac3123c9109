// Command kstatus prints what sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute
// (the library Flux, kpt and `kubectl wait`-style tooling use to judge a
// resource) says about Kubernetes objects, one JSON line per object.
//
//	kstatus [-f FILE]                                 objects from FILE or stdin:
//	                                                  YAML or JSON, several documents, or a List
//	kstatus --kubeconfig K [-n NS] [--resource R] NAME   one object from the API server
//	                                                  (R: plural.version.group, default
//	                                                  databasemigrations.v1alpha1.lockstep.dev)
//
// Each line: {"kind","namespace","name","generation","observedGeneration",
// "status","message","conditions"}; status is Current, InProgress, Failed,
// Terminating, NotFound or Unknown. The exit code is 0 whatever the verdict, 1
// when an object cannot be read or judged, 2 on bad usage.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

const defaultResource = "databasemigrations.v1alpha1.lockstep.dev"

// Verdict is one output line.
type Verdict struct {
	Kind               string             `json:"kind"`
	Namespace          string             `json:"namespace,omitempty"`
	Name               string             `json:"name"`
	Generation         int64              `json:"generation"`
	ObservedGeneration *int64             `json:"observedGeneration"`
	Status             status.Status      `json:"status"`
	Message            string             `json:"message"`
	Conditions         []status.Condition `json:"conditions"`
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("kstatus", flag.ContinueOnError)
	flags.SetOutput(stderr)
	file := flags.String("f", "-", "read objects from this file (- for stdin)")
	kubeconfig := flags.String("kubeconfig", "", "read NAME from the API server of this kubeconfig")
	namespace := flags.String("n", "default", "namespace of NAME (with --kubeconfig)")
	resource := flags.String("resource", defaultResource, "resource of NAME as plural.version.group")
	timeout := flags.Duration("timeout", 10*time.Second, "API request timeout (with --kubeconfig)")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	out := json.NewEncoder(stdout)
	if *kubeconfig != "" {
		if flags.NArg() != 1 {
			fmt.Fprintln(stderr, "kstatus: --kubeconfig needs exactly one NAME")
			return 2
		}
		obj, err := fetch(*kubeconfig, *resource, *namespace, flags.Arg(0), *timeout)
		if apierrors.IsNotFound(err) {
			gone := Verdict{Namespace: *namespace, Name: flags.Arg(0), Status: status.NotFoundStatus,
				Message: "Resource not found", Conditions: []status.Condition{}}
			if err := out.Encode(gone); err != nil {
				return 1
			}
			return 0
		}
		if err != nil {
			fmt.Fprintf(stderr, "kstatus: %v\n", err)
			return 1
		}
		return emit(out, stderr, []*unstructured.Unstructured{obj})
	}
	if flags.NArg() != 0 {
		fmt.Fprintln(stderr, "kstatus: NAME needs --kubeconfig; objects on stdin need no arguments")
		return 2
	}
	in := stdin
	if *file != "-" {
		f, err := os.Open(*file)
		if err != nil {
			fmt.Fprintf(stderr, "kstatus: %v\n", err)
			return 1
		}
		defer f.Close()
		in = f
	}
	objects, err := decode(in)
	if err != nil {
		fmt.Fprintf(stderr, "kstatus: %v\n", err)
		return 1
	}
	return emit(out, stderr, objects)
}

func emit(out *json.Encoder, stderr io.Writer, objects []*unstructured.Unstructured) int {
	for _, obj := range objects {
		verdict, err := judge(obj)
		if err != nil {
			fmt.Fprintf(stderr, "kstatus: %s %s/%s: %v\n", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
			return 1
		}
		if err := out.Encode(verdict); err != nil {
			fmt.Fprintf(stderr, "kstatus: %v\n", err)
			return 1
		}
	}
	return 0
}

func judge(obj *unstructured.Unstructured) (*Verdict, error) {
	result, err := status.Compute(obj)
	if err != nil {
		return nil, err
	}
	verdict := &Verdict{
		Kind:       obj.GetKind(),
		Namespace:  obj.GetNamespace(),
		Name:       obj.GetName(),
		Generation: obj.GetGeneration(),
		Status:     result.Status,
		Message:    result.Message,
		Conditions: result.Conditions,
	}
	if verdict.Conditions == nil {
		verdict.Conditions = []status.Condition{}
	}
	if observed, found, err := unstructured.NestedInt64(obj.Object, "status", "observedGeneration"); err == nil && found {
		verdict.ObservedGeneration = &observed
	}
	return verdict, nil
}

// decode reads YAML or JSON documents (a stream of them, or Lists) into objects.
func decode(in io.Reader) ([]*unstructured.Unstructured, error) {
	decoder := utilyaml.NewYAMLOrJSONDecoder(bufio.NewReader(in), 4096)
	var objects []*unstructured.Unstructured
	for {
		var raw json.RawMessage
		if err := decoder.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("decoding input: %w", err)
		}
		// Apimachinery's JSON keeps whole numbers int64 (generation, observedGeneration).
		var content map[string]interface{}
		if err := utiljson.Unmarshal(raw, &content); err != nil {
			return nil, fmt.Errorf("decoding input: %w", err)
		}
		if len(content) == 0 {
			continue // an empty YAML document
		}
		obj := &unstructured.Unstructured{Object: content}
		if obj.IsList() {
			list, err := obj.ToList()
			if err != nil {
				return nil, fmt.Errorf("decoding list: %w", err)
			}
			for i := range list.Items {
				objects = append(objects, &list.Items[i])
			}
			continue
		}
		if obj.GetKind() == "" {
			return nil, fmt.Errorf("document %d has no kind", len(objects)+1)
		}
		objects = append(objects, obj)
	}
	return objects, nil
}

func fetch(kubeconfig, resource, namespace, name string, timeout time.Duration) (*unstructured.Unstructured, error) {
	gvr, _ := schema.ParseResourceArg(resource)
	if gvr == nil || strings.Count(resource, ".") < 2 {
		return nil, fmt.Errorf("--resource %q is not plural.version.group", resource)
	}
	config, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", kubeconfig, err)
	}
	config.Timeout = timeout
	client, err := dynamic.NewForConfig(config)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return client.Resource(*gvr).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
}
