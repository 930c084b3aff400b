#!/usr/bin/env node
// Runs the TypeScript sources directly (tsx), so `npm start` and `npx payrail` need no build step.
import { register } from 'tsx/esm/api'

register()
await import('../src/main.ts')
