"""A detector: conversion to a self-describing IR, graph rewrites, decoders per family, the Detector."""
