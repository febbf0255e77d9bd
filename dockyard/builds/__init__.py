"""Builds from source: Build and BuildConfig objects become images in the project's repository."""
