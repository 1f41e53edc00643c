// Command compose-check validates a Compose file against the Compose
// specification, with the schema and the loader of compose-go (the library
// `docker compose` itself loads files with), and prints the loaded model as
// JSON for further checks (scripts/check_compose.py). Offline: no container
// engine is needed or contacted.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: compose-check COMPOSE_FILE")
		os.Exit(2)
	}
	if err := check(os.Args[1]); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func check(file string) error {
	path, err := filepath.Abs(file)
	if err != nil {
		return err
	}
	options, err := cli.NewProjectOptions(
		[]string{path},
		cli.WithWorkingDirectory(filepath.Dir(path)),
		cli.WithOsEnv,
	)
	if err != nil {
		return err
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		return err
	}
	model, err := json.MarshalIndent(project, "", "  ")
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(append(model, '\n'))
	return err
}
