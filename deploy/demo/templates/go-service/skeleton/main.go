// Command ${{ values.name }}: ${{ values.description }}
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/acme-rail/go-service-kit/service"
)

func main() {
	svc := service.New("${{ values.name }}")
	if err := svc.Run(context.Background()); err != nil {
		slog.Error("service stopped", "err", err)
		os.Exit(1)
	}
}
