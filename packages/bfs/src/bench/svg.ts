/** A grouped bar chart (phase times per system) as a standalone SVG, no dependencies. */
const COLORS = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#b07aa1'];

function esc(s: string): string {
  return s.replace(
    /[<>&"]/g,
    (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!,
  );
}

export function barChart(
  title: string,
  groups: string[],
  series: { name: string; values: number[] }[],
  unit: string,
): string {
  const W = 720;
  const H = 360;
  const left = 60;
  const bottom = 40;
  const top = 40;
  const plotW = W - left - 20;
  const plotH = H - top - bottom;
  const max = Math.max(1e-9, ...series.flatMap((s) => s.values));
  const groupW = plotW / groups.length;
  const barW = (groupW * 0.8) / series.length;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${esc(title)}</text>`,
  ];
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    const y = top + plotH - (plotH * i) / 4;
    out.push(`<line x1="${left}" x2="${W - 20}" y1="${y}" y2="${y}" stroke="#ddd"/>`);
    out.push(
      `<text x="${left - 6}" y="${y + 4}" text-anchor="end">${v.toPrecision(3)} ${esc(unit)}</text>`,
    );
  }
  groups.forEach((g, gi) => {
    const x0 = left + gi * groupW + groupW * 0.1;
    series.forEach((s, si) => {
      const h = (plotH * s.values[gi]) / max;
      out.push(
        `<rect x="${(x0 + si * barW).toFixed(1)}" y="${(top + plotH - h).toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${h.toFixed(1)}" fill="${COLORS[si % COLORS.length]}"><title>${esc(s.name)} ${esc(g)}: ${s.values[gi].toFixed(3)} ${esc(unit)}</title></rect>`,
      );
    });
    out.push(
      `<text x="${left + gi * groupW + groupW / 2}" y="${H - bottom + 16}" text-anchor="middle">${esc(g)}</text>`,
    );
  });
  series.forEach((s, si) => {
    const x = left + 10 + si * 150;
    out.push(
      `<rect x="${x}" y="${H - 14}" width="10" height="10" fill="${COLORS[si % COLORS.length]}"/>`,
    );
    out.push(`<text x="${x + 14}" y="${H - 5}">${esc(s.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
