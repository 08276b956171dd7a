import { defineConfig } from 'vite';

// Node's `process` (kept local so the project needs no @types/node).
declare const process: { env: Record<string, string | undefined> };

// Where `npm run dev` forwards API and WebSocket traffic (a locally running server).
const backend = process.env.EMERGENCE_DEV_BACKEND ?? 'http://127.0.0.1:8080';

export default defineConfig({
  // Preact through esbuild's automatic JSX runtime: no Babel, no extra plugin.
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  base: '/',
  publicDir: 'public',
  server: {
    proxy: {
      '/api': { target: backend, changeOrigin: false },
      '/ws': { target: backend, ws: true, changeOrigin: false },
      '/healthz': backend,
      '/readyz': backend,
    },
  },
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    emptyOutDir: true,
    target: 'es2020',
    // The page loads exactly one script and one stylesheet; no preload helper, no polyfill. Two
    // lazy chunks are fetched only when a message needs them: the code highlighter
    // (`languages-<hash>.js`, src/markdown/highlight.ts) and the math typesetter
    // (`mathml-<hash>.js`, src/markdown/math.ts).
    modulePreload: false,
    cssCodeSplit: false,
    assetsInlineLimit: 0,
    sourcemap: false,
    reportCompressedSize: false,
    rollupOptions: {
      output: {
        hashCharacters: 'hex',
        entryFileNames: 'assets/index-[hash].js',
        chunkFileNames: 'assets/[name]-[hash].js',
        assetFileNames: (info) =>
          (info.names ?? []).some((n) => n.endsWith('.css'))
            ? 'assets/index-[hash][extname]'
            : 'assets/[name]-[hash][extname]',
      },
    },
  },
});
