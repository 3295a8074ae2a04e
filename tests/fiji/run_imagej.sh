#!/usr/bin/env bash
echo "fiji_imagej: not yet"; exit 1
