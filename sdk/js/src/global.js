// The classic-script entry: `<script src=".../sdk/builder.js">` defines `window.Builder`,
// the name the Builder events documentation calls.
import { Builder } from './builder.js'

globalThis.Builder = Builder
