#!/bin/sh
# The whole stack in one command: secrets (once), image build, start.
set -eu
cd "$(dirname "$0")"
./init.sh
docker compose up -d --build "$@"
docker compose ps
