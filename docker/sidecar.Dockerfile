# The sidecar. Build from the repository root:  docker build -f docker/sidecar.Dockerfile -t meshproxy/sidecar .
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
# Native AOT links with the platform's C toolchain and zlib.
RUN apt-get update && apt-get install -y --no-install-recommends clang zlib1g-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The project's publish default for a runtime identifier: Native AOT (less memory and a ~80 ms start;
# src/MeshProxy.Sidecar/MeshProxy.Sidecar.csproj). -p:PublishAot=false gives the trimmed JIT build.
# Symbols (meshproxy-sidecar.dbg) and PDBs stay in the build stage.
RUN dotnet publish src/MeshProxy.Sidecar -c Release -r linux-x64 -o /out/sidecar \
 && rm -f /out/sidecar/*.dbg /out/sidecar/*.pdb \
 && dotnet publish src/MeshProxy.Init -c Release -o /out/init

# Chiseled: no shell, no package manager, nothing to write to. The sidecar is one native executable;
# the shared ASP.NET Core runtime here is for meshproxy-init (framework-dependent).
FROM mcr.microsoft.com/dotnet/aspnet:10.0-noble-chiseled
WORKDIR /app
COPY --from=build /out/sidecar /app
# meshproxy-init's `wait` is the postStart hook of a classic (non-native) sidecar; it has no
# capabilities here and installs nothing.
COPY --from=build /out/init /app/init
# No diagnostics IPC socket or perf map under /tmp: the root filesystem is read-only.
ENV DOTNET_EnableDiagnostics=0 \
    DOTNET_gcServer=0
USER 1337:1337
# outbound 15001, inbound 15006, stats and health 15020 (admin 15000 is loopback only)
EXPOSE 15001 15006 15020
# The injected pod sets MESHPROXY_CONFIG to the bootstrap file projected from the pod's annotation.
ENTRYPOINT ["/app/meshproxy-sidecar"]
